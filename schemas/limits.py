"""Input limits for every free-text field and collection (one place, enforced by the models)."""

MAX_MESSAGE_BYTES = 256 * 1024  # a whole event on the wire
MAX_ID_CHARS = 128
MAX_TITLE_CHARS = 300
MAX_DESCRIPTION_CHARS = 5_000
MAX_CONTEXT_CHARS = 1_000
MAX_ATTR_KEY_CHARS = 64
MAX_ATTR_VALUE_CHARS = 200
MAX_ATTRIBUTES = 64
MAX_ATTR_LIST = 16
MAX_K = 100
MAX_PRICE = 1_000_000.0

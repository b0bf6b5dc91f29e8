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
MAX_ATTR_NUMBER = 10**15  # a numeric attribute value, either sign
MAX_K = 100
MAX_PRICE = 1_000_000.0
# A dead letter keeps the original bytes whole up to this size: base64 (x4/3) of it plus the
# envelope stays under Kafka's default 1 MiB message limit. A bigger message (the broker
# took up to 1 MiB) keeps its first bytes; the whole of it stays at its topic/partition/offset.
MAX_DEADLETTER_PAYLOAD_BYTES = 512 * 1024
MAX_DEADLETTER_KEY_CHARS = 1_024  # message keys are not bounded by the broker either

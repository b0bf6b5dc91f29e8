"""Plain aiokafka clients (producer, request-reply client) and the adapters to the
services workers call (enrichment backends, the Milvus vector store)."""

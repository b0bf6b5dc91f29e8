"""Torch models and their vocabularies. No Kafka, no Milvus here."""

"""Object stores: bytes under keys (S3 via aiobotocore, local directory, memory)."""

"""Object stores: bytes under keys (S3 via aiobotocore, local directory, memory).

The bottom layer of the core (DESIGN.md §1, §3). Everything above addresses objects through the
:class:`ObjectStore` protocol and receives one of these implementations, usually from
:func:`store_from_url`, wrapped in :class:`PrefixedObjectStore` for the volume's prefix.
"""

from artifacts_core.objects.base import LIST_PAGE, ListPage, ObjectInfo, ObjectStore, list_all
from artifacts_core.objects.local import LocalObjectStore
from artifacts_core.objects.memory import MemoryObjectStore
from artifacts_core.objects.prefix import PrefixedObjectStore
from artifacts_core.objects.retry import RetryPolicy
from artifacts_core.objects.s3 import S3ObjectStore
from artifacts_core.objects.stats import ObjectStoreStats
from artifacts_core.objects.url import redact_url, store_from_url

__all__ = [
    "LIST_PAGE",
    "ListPage",
    "LocalObjectStore",
    "MemoryObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "ObjectStoreStats",
    "PrefixedObjectStore",
    "RetryPolicy",
    "S3ObjectStore",
    "list_all",
    "redact_url",
    "store_from_url",
]

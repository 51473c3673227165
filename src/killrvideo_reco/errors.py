"""The exceptions of killrvideo-reco.

Every error a request can meet carries its HTTP status as data; the API maps
them to responses in one place (``api/errors.py``) and nothing else raises
HTTP exceptions::

    RecoError
    ├── RequestError                 the client's mistake: 4xx, writes nothing
    │   ├── MalformedJSON            400  body is not parseable JSON
    │   ├── Unauthenticated          401  missing, malformed, expired or forged token
    │   ├── Forbidden                403  valid token without the required role
    │   ├── VideoNotFound            404  no such video: nothing was written
    │   ├── PayloadTooLarge          413  body over the configured limit
    │   ├── UnsupportedMediaType     415  body is not declared as JSON, or is encoded
    │   ├── ClientDisconnected       499  the client left before sending its whole body
    │   └── InvalidRequest           422  well-formed JSON that breaks a rule
    │       └── InvalidVector        422  the vector breaks a rule; ``index`` if one element
    ├── KeysUnavailable              503  the identity provider's signing keys cannot be had
    ├── StorageError                 Cassandra trouble: the client may retry
    │   ├── StorageUnavailable       503  timeouts, unavailable replicas, overload
    │   └── SchemaNotReady           503  keyspace, table or index missing
    └── ConfigError                  the service is set up wrongly (start-up only)
        ├── SchemaMismatch           existing schema differs from what was asked
        └── GraphOptionsRefused      the cluster refuses the KV_INDEX_* graph options set
"""

from __future__ import annotations


class RecoError(Exception):
    status_code = 500
    # A 503's own Retry-After, when it knows better than KV_RETRY_AFTER_S.
    retry_after_s: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Set by whoever knows the (valid) videoId, so the response can echo it.
        self.video_id: str | None = None


class RequestError(RecoError):
    status_code = 400


class MalformedJSON(RequestError):
    status_code = 400


class Unauthenticated(RequestError):
    status_code = 401


class Forbidden(RequestError):
    status_code = 403


class VideoNotFound(RequestError):
    status_code = 404


class PayloadTooLarge(RequestError):
    status_code = 413


class UnsupportedMediaType(RequestError):
    status_code = 415


class ClientDisconnected(RequestError):
    # nginx's "client closed request": nobody reads the answer, but the status
    # keeps it apart from our errors in metrics, and it is logged without alarm.
    status_code = 499


class InvalidRequest(RequestError):
    status_code = 422


class InvalidVector(InvalidRequest):
    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class KeysUnavailable(RecoError):
    """The token names a key we do not hold, and the provider could not be asked.

    Not the client's fault, and it may pass: ``retry_after_s`` is when the next
    fetch of the key set may happen.
    """

    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StorageError(RecoError):
    status_code = 503


class StorageUnavailable(StorageError):
    """Cassandra did not answer in time, lacked replicas, or shed load.

    ``kind`` names the driver error (``WriteTimeout``, ``Unavailable``, …) so that
    it can be counted and logged without the caller importing the driver. When
    the cluster said so, ``consistency`` is the level asked for and ``required``
    / ``received`` the replicas it needed and those that answered (or were alive).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        consistency: str | None = None,
        required: int | None = None,
        received: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.consistency = consistency
        self.required = required
        self.received = received


class SchemaNotReady(StorageError):
    pass


class ConfigError(RecoError):
    pass


class SchemaMismatch(ConfigError):
    pass


class GraphOptionsRefused(ConfigError):
    """The cluster refuses custom SAI graph options, and the operator set them explicitly."""

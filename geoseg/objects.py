"""Outputs in object storage: ``s3://bucket/prefix`` as an output folder, written one complete object at a time.

The functions here take ``s3://`` URLs and are all a run (or a batch) needs
of an object store: :func:`is_remote_dir`, :func:`join`, :func:`exists`,
:func:`read_bytes`, :func:`write_bytes`, :func:`upload_file`,
:func:`list_objects`, :func:`remove` / :func:`remove_prefix`, and
:func:`zarr_store` for a working store kept there.

Settings come from the environment GDAL reads scenes with, so one set of
variables serves reads and writes: the endpoint from ``AWS_ENDPOINT_URL_S3``
or ``AWS_ENDPOINT_URL`` (a URL), else GDAL's ``AWS_S3_ENDPOINT`` (host and
port, ``http`` when ``AWS_HTTPS=NO``); the region from ``AWS_REGION`` or
``AWS_DEFAULT_REGION``; credentials from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, else (where boto3 is
installed) the profile named by ``AWS_PROFILE`` or the default one, else
the instance's role. Nothing here reads a credential's value to show it:
errors name the object by :func:`geoseg.remote.display_name` and say what
to check, in one line.

The client is `obstore <https://developmentseed.org/obstore/>`_ (Rust's
``object_store``): a synchronous API without a Python event loop, thread
safe (Dask threads share one client), and the store zarr 3 opens as
``zarr.storage.ObjectStore``. Its runtime does not survive ``fork()``: a
forked child that uses it hangs. Every process geoseg starts is spawned
(the vector stage's pool, ``local:N`` clusters, the ``processes``
scheduler), and a forked child that calls in here gets a one-line error
instead of a hang.

Every object is written whole: a single PUT up to :data:`SINGLE_PUT_BYTES`,
above that a multipart upload, which S3 shows at its key only once it is
completed (after the last part). A failed or killed upload leaves no
object at the key. obstore aborts a multipart upload whose completion
fails, but not one whose part upload fails or that is killed: those leave
invisible parts, which a bucket lifecycle rule
(``AbortIncompleteMultipartUpload``) removes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import GeosegError, GeosegIOError, OutputExistsError
from .remote import display_name

if TYPE_CHECKING:
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

__all__ = [
    "PART_BYTES",
    "SINGLE_PUT_BYTES",
    "ObjectChangedError",
    "endpoint",
    "errors",
    "exists",
    "head",
    "is_remote_dir",
    "join",
    "list_objects",
    "read_bytes",
    "remove",
    "remove_prefix",
    "split",
    "upload_file",
    "write_bytes",
    "zarr_store",
]

#: Files up to this size are uploaded in one PUT; larger ones as a multipart upload completed at the end.
SINGLE_PUT_BYTES = 64 << 20
#: The part size of multipart uploads (S3 takes 5 MiB to 5 GiB, and at most 10,000 parts).
PART_BYTES = 16 << 20

_S3 = re.compile(r"^s3://([^/?#]+)/?(.*)$", re.IGNORECASE)
_pid = os.getpid()


class ObjectChangedError(GeosegIOError):
    """A conditional write found the object changed (or present) since it was read."""


def _forked() -> None:
    global _pid
    _pid = -1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def is_remote_dir(url: str | os.PathLike[str] | None) -> bool:
    """Whether `url` names an object-store folder (``s3://bucket`` or ``s3://bucket/prefix``) rather than a local one.

    Examples
    --------
    >>> is_remote_dir("s3://bucket/maps"), is_remote_dir("maps"), is_remote_dir(None)
    (True, False, False)
    """
    return url is not None and isinstance(url, str) and bool(_S3.match(url))


def split(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")`` (no slash at either end of the key).

    Examples
    --------
    >>> split("s3://bucket/maps/2026/")
    ('bucket', 'maps/2026')
    """
    m = _S3.match(url)
    if not m:
        raise ValueError(f"not an s3:// URL: {display_name(url)}")
    return m.group(1), m.group(2).strip("/")


def join(url: str, *parts: str) -> str:
    """`url` with `parts` appended as path segments.

    Examples
    --------
    >>> join("s3://bucket/maps/", "scene.zarr", "classes")
    's3://bucket/maps/scene.zarr/classes'
    >>> join("s3://bucket", "scene.run.json")
    's3://bucket/scene.run.json'
    """
    bucket, key = split(url)
    path = "/".join(p.strip("/") for p in (key, *parts) if p.strip("/"))
    return f"s3://{bucket}/{path}" if path else f"s3://{bucket}"


# -- settings and the client ---------------------------------------------------------------------


def endpoint() -> str | None:
    """The S3 endpoint URL the environment names (see the module docstring), or None for AWS's own."""
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(var):
            return os.environ[var].rstrip("/")
    host = os.environ.get("AWS_S3_ENDPOINT")
    if not host:
        return None
    if "://" in host:
        return host.rstrip("/")
    secure = os.environ.get("AWS_HTTPS", "YES").strip().upper() not in ("NO", "FALSE", "OFF", "0")
    return f"{'https' if secure else 'http'}://{host.rstrip('/')}"


def _settings() -> tuple[tuple[str, str], ...]:
    """What the client is built from: the settings, not the secrets (those obstore reads itself)."""
    keys = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_VIRTUAL_HOSTING")
    return (("endpoint", endpoint() or ""), *((k, os.environ.get(k, "")) for k in keys))


def _store(bucket: str, prefix: str = "") -> S3Store:
    if _pid != os.getpid():
        raise GeosegIOError(
            "s3:// outputs cannot be written from a forked process (its S3 client does not survive fork); "
            "start worker processes with the spawn method"
        )
    return _cached_store(bucket, prefix, _settings())


@functools.lru_cache(maxsize=64)
def _cached_store(bucket: str, prefix: str, settings: tuple[tuple[str, str], ...]) -> S3Store:
    from obstore.store import S3Store

    env = dict(settings)
    url = env["endpoint"] or None
    region = env["AWS_REGION"] or env["AWS_DEFAULT_REGION"] or "us-east-1"
    config: dict[str, Any] = {"region": region}
    client: dict[str, Any] = {"connect_timeout": "10s", "timeout": "300s"}
    if url:
        config["endpoint"] = url
        client["allow_http"] = url.lower().startswith("http://")
    # Path-style requests (bucket in the path) work with every endpoint; GDAL's switch is honoured.
    config["virtual_hosted_style_request"] = env["AWS_VIRTUAL_HOSTING"].upper() in ("TRUE", "YES") and not url
    retry = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=60),
        "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2},
    }
    provider = None
    if not env["AWS_ACCESS_KEY_ID"] and (env["AWS_PROFILE"] or Path("~/.aws").expanduser().is_dir()):
        with contextlib.suppress(ImportError):  # profiles need boto3; without it, the instance's role
            import boto3
            from obstore.auth.boto3 import Boto3CredentialProvider

            provider = Boto3CredentialProvider(boto3.Session(profile_name=env["AWS_PROFILE"] or None))
    return S3Store(
        bucket,
        prefix=prefix or None,
        config=config,  # type: ignore[arg-type]
        client_options=client,  # type: ignore[arg-type]
        retry_config=retry,  # type: ignore[arg-type]
        credential_provider=provider,
    )


# -- errors ---------------------------------------------------------------------------------------


def _problem(exc: BaseException, url: str) -> GeosegIOError:
    """One line for a failed request about `url`: what went wrong and what to check, never the raw answer."""
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    bucket, _ = split(url)
    shown = display_name(url)
    text = str(exc)
    where = endpoint() or "AWS S3"
    settings = "AWS_ENDPOINT_URL (or AWS_S3_ENDPOINT and AWS_HTTPS)"
    if "NoSuchBucket" in text:
        return GeosegIOError(
            f"bucket {bucket} does not exist at {where} ({shown}); check the bucket name and {settings}"
        )
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or re.search(
        r"\b(403|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken)\b", text
    ):
        return GeosegIOError(
            f"access denied to {shown}; check the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE) and their permissions on the bucket"
        )
    if re.search(r"error sending request|connection refused|dns error|timed out|tcp connect", text, re.IGNORECASE):
        return GeosegIOError(f"cannot reach the S3 endpoint {where} for {shown}; check {settings} and the network")
    status = re.search(r"status code: (\d{3})", text)
    why = f"the server answered {status.group(1)}" if status else type(exc).__name__
    return GeosegIOError(f"cannot access {shown}: {why}; check {settings} and the AWS credentials")


@contextlib.contextmanager
def errors(url: str) -> Iterator[None]:
    """Turn the object store's errors inside the block into one :class:`GeosegIOError` line about `url`.

    geoseg's own errors, and errors from anything but the object store, pass unchanged.
    """
    from obstore.exceptions import BaseError

    try:
        yield
    except GeosegError:
        raise
    except Exception as exc:
        # obstore raises its own errors, and the builtin FileNotFoundError for a missing object or bucket
        if isinstance(exc, BaseError) or (isinstance(exc, FileNotFoundError) and "NoSuchBucket" in str(exc)):
            raise _problem(exc, url) from exc
        raise


# -- objects --------------------------------------------------------------------------------------


def head(url: str) -> dict[str, Any] | None:
    """The object's metadata (``size``, ``e_tag``, ``last_modified``), or None where there is none."""
    import obstore

    bucket, key = split(url)
    with errors(url):
        try:
            return dict(obstore.head(_store(bucket), key))
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise
            return None


def exists(url: str) -> bool:
    """Whether an object is at `url`."""
    return head(url) is not None


def read_bytes(url: str) -> tuple[bytes, str | None] | None:
    """The object's bytes and ETag, or None where there is no object at `url`."""
    import obstore

    bucket, key = split(url)
    with errors(url):
        try:
            got = obstore.get(_store(bucket), key)
            return bytes(got.bytes()), got.meta.get("e_tag")
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise
            return None


def write_bytes(url: str, data: bytes, *, create: bool = False, if_match: str | None = None) -> str | None:
    """Write `data` as the whole object at `url` (one PUT); its new ETag.

    With `create`, only where no object is there yet (``If-None-Match: *``);
    with `if_match`, only where the object still has that ETag
    (``If-Match``). Either condition unmet raises :class:`ObjectChangedError`.
    """
    import obstore
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    bucket, key = split(url)
    mode: Any = "create" if create else {"e_tag": if_match} if if_match else "overwrite"
    with errors(url):
        try:
            done = obstore.put(_store(bucket), key, data, mode=mode, use_multipart=False)
        except (AlreadyExistsError, PreconditionError) as exc:
            raise ObjectChangedError(f"{display_name(url)} exists or changed") from exc
        except FileNotFoundError as exc:  # If-Match on an object removed meanwhile
            if "NoSuchBucket" in str(exc) or not if_match:
                raise
            raise ObjectChangedError(f"{display_name(url)} was removed") from exc
    return done.get("e_tag")


def upload_file(path: str | os.PathLike[str], url: str, *, overwrite: bool = True) -> None:
    """Upload the file at `path` as one complete object at `url`.

    Up to :data:`SINGLE_PUT_BYTES` in one PUT, above that as a multipart
    upload that S3 shows at `url` only once its last part is in.

    Raises
    ------
    OutputExistsError
        `overwrite` is False and an object is at `url`.
    """
    import obstore
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    bucket, key = split(url)
    size = Path(path).stat().st_size
    with errors(url):
        try:
            if size <= SINGLE_PUT_BYTES:
                obstore.put(
                    _store(bucket),
                    key,
                    Path(path).read_bytes(),
                    mode="overwrite" if overwrite else "create",
                    use_multipart=False,
                )
            else:
                if not overwrite and exists(url):
                    raise OutputExistsError(f"{display_name(url)} already exists; pass --overwrite to replace")
                part = max(PART_BYTES, -(-size // 10_000))
                obstore.put(_store(bucket), key, Path(path), use_multipart=True, chunk_size=part)
        except (AlreadyExistsError, PreconditionError):
            raise OutputExistsError(f"{display_name(url)} already exists; pass --overwrite to replace") from None


def list_objects(url: str) -> list[str]:
    """The URLs of every object under the folder `url` (``url/…``), sorted.

    Also the first request a run makes of its output folder: a missing
    bucket, refused credentials or an unreachable endpoint fail here, in one line.
    """
    import obstore

    bucket, key = split(url)
    with errors(url):
        found = obstore.list(_store(bucket), prefix=f"{key}/" if key else None).collect()
    return sorted(f"s3://{bucket}/{o['path']}" for o in found)


def remove(url: str) -> None:
    """Delete the object at `url` (nothing happens where there is none)."""
    import obstore

    bucket, key = split(url)
    with errors(url), contextlib.suppress(FileNotFoundError):
        obstore.delete(_store(bucket), key)


def remove_prefix(url: str) -> int:
    """Delete every object under the folder `url`; how many there were."""
    import obstore

    bucket, _ = split(url)
    found = list_objects(url)
    keys = [split(u)[1] for u in found]
    with errors(url):
        for i in range(0, len(keys), 1000):  # S3's DeleteObjects takes up to 1000 keys
            obstore.delete(_store(bucket), keys[i : i + 1000])
    return len(keys)


def zarr_store(url: str, *, read_only: bool = False) -> ObjectStore:
    """A zarr 3 store over the folder `url` (``zarr.storage.ObjectStore``)."""
    from zarr.storage import ObjectStore

    bucket, key = split(url)
    return ObjectStore(_store(bucket, key), read_only=read_only)

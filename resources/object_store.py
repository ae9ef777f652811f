"""Object storage (raw API payloads, models, images): S3 when configured, a local folder if not.

Both backends share one key layout, ``{prefix}/...``, so moving from a laptop to a bucket is a
matter of setting ``S3_BUCKET``; nothing in the assets changes.
"""

from __future__ import annotations

import io
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

# Private module, public class behaviour: the pickle IO manager behind dg.FilesystemIOManager
# (dagster is pinned to one version in pyproject.toml).
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager
from pydantic import PrivateAttr

from resources.settings import Settings

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


class ObjectStore(dg.ConfigurableResource):
    """Put/get/list/delete bytes by key. Writes are atomic: a reader never sees half an object."""

    bucket: str | None = None
    prefix: str = "dagster"
    endpoint_url: str | None = None
    local_dir: str = "data/objects"

    _client = PrivateAttr(default=None)

    @property
    def is_s3(self) -> bool:
        return bool(self.bucket)

    def key(self, *parts: str) -> str:
        """A full key under the configured prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)

    def uri(self, key: str) -> str:
        if self.is_s3:
            return f"s3://{self.bucket}/{key}"
        return str(Path(self.local_dir) / key)

    def polars_storage_options(self) -> dict[str, str] | None:
        """What polars needs to read this store's ``s3://`` URIs; credentials and region come
        from the standard AWS environment variables. None for the local folder."""
        if not self.is_s3:
            return None
        options: dict[str, str] = {}
        if self.endpoint_url:
            options["aws_endpoint_url"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["aws_allow_http"] = "true"
        return options

    def _s3(self):
        if self._client is None:
            # Imported on first use: dagster_aws costs ~1 s at definitions load.
            from dagster_aws.s3 import S3Resource

            self._client = S3Resource(endpoint_url=self.endpoint_url).get_client()
        return self._client

    def _path(self, key: str) -> Path:
        root = Path(self.local_dir).resolve()
        path = (root / key).resolve()
        if root not in path.parents:
            raise ValueError(f"object key {key!r} escapes the object store root")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        if self.is_s3:
            extra = {"ContentType": content_type} if content_type else {}
            self._s3().put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        else:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        if self.is_s3:
            return self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return self._path(key).read_bytes()

    def put_parquet(self, key: str, frame: pl.DataFrame) -> str:
        """``frame`` as one zstd parquet object (atomic, as ``put_bytes``); returns its URI."""
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd")
        return self.put_bytes(key, buffer.getvalue(), content_type=PARQUET_CONTENT_TYPE)

    def get_parquet(self, key: str) -> pl.DataFrame:
        return pl.read_parquet(io.BytesIO(self.get_bytes(key)))

    def exists(self, key: str) -> bool:
        if self.is_s3:
            found = self._s3().list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
            return any(o["Key"] == key for o in found.get("Contents", []))
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``, sorted."""
        if self.is_s3:
            keys: list[str] = []
            paginator = self._s3().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(o["Key"] for o in page.get("Contents", []))
            return sorted(keys)
        root = Path(self.local_dir).resolve()
        base = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else root
        if not base.exists():
            return []
        found = (
            p.relative_to(root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
        return sorted(k for k in found if k.startswith(prefix))

    def delete(self, keys: list[str]) -> int:
        if not keys:
            return 0
        if self.is_s3:
            for start in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[start : start + 1000]]
                self._s3().delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
        else:
            for key in keys:
                self._path(key).unlink(missing_ok=True)
        return len(keys)

    def spec(self) -> ObjectStoreSpec:
        """This store's settings as plain values, to rebuild it in another process."""
        return ObjectStoreSpec(self.bucket, self.prefix, self.endpoint_url, str(self.local_dir))


@dataclass(frozen=True)
class ObjectStoreSpec:
    """An object store's settings, picklable: a Spark task rebuilds the store from it (the
    resource itself may hold a live S3 client, which does not pickle)."""

    bucket: str | None
    prefix: str
    endpoint_url: str | None
    local_dir: str

    def build(self) -> ObjectStore:
        return ObjectStore(
            bucket=self.bucket,
            prefix=self.prefix,
            endpoint_url=self.endpoint_url,
            local_dir=self.local_dir,
        )


def object_store_from(settings: Settings) -> ObjectStore:
    return ObjectStore(
        bucket=settings.s3_bucket,
        prefix=settings.s3_prefix,
        endpoint_url=settings.s3_endpoint_url,
        local_dir=str(settings.objects_dir),
    )


class _AtomicPickleFiles(PickledObjectFilesystemIOManager):
    """Pickles into a hidden temp file beside the target, then renames it over the target."""

    def dump_to_path(self, context: dg.OutputContext, obj: object, path) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            super().dump_to_path(context, obj, tmp)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class AtomicFilesystemIOManager(dg.FilesystemIOManager):
    """``dg.FilesystemIOManager`` (same paths, same pickles) with atomic writes.

    The stock one opens the target with ``"wb"``, truncating it, then pickles into it: a failure
    or a kill mid-pickle destroys the previous object. A reader here sees the old or the new.
    """

    def create_io_manager(self, context: dg.InitResourceContext) -> _AtomicPickleFiles:
        base_dir = self.base_dir or context.instance.storage_directory()
        return _AtomicPickleFiles(base_dir=base_dir)


def object_io_manager_from(settings: Settings) -> dg.ConfigurableIOManagerFactory:
    """Pickled Python objects (models): ``S3PickleIOManager`` or the same layout on disk.

    Both replace an object in one step: the S3 IO manager pickles into memory, then uploads,
    and S3 shows an object only once its upload is complete; on disk the file is renamed into
    place.
    """
    if settings.s3_bucket:
        from dagster_aws.s3 import S3PickleIOManager, S3Resource

        return S3PickleIOManager(
            s3_resource=S3Resource(endpoint_url=settings.s3_endpoint_url),
            s3_bucket=settings.s3_bucket,
            s3_prefix=settings.s3_prefix,
        )
    return AtomicFilesystemIOManager(base_dir=str(settings.objects_dir / settings.s3_prefix))

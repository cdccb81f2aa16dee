"""MongoDB for tests: every client of the process (maggma's ``MongoStore`` and ``GridFSStore``,
FireWorks' ``LaunchPad``) becomes one shared mongomock client, as if they all reached one
server. No MongoDB server can run on these machines.

The one shim: pymongo 4.16's ``ReplaceOne``/``UpdateOne`` hand ``sort=`` to the bulk builder,
which mongomock 4.3's ``BulkOperationBuilder.add_replace``/``add_update`` do not accept (every
batch write of maggma's ``MongoStore.update`` then fails with a ``TypeError``). The shim drops
``sort`` when it is None, the only value maggma and esen-flows pass.
"""

from __future__ import annotations

import functools

import mongomock
import mongomock.gridfs
from mongomock.collection import BulkOperationBuilder


def _without_sort(method):
    @functools.wraps(method)
    def wrapper(self, *args, sort=None, **kwargs):
        if sort is not None:
            raise NotImplementedError("mongomock cannot sort a bulk replace or update")
        return method(self, *args, **kwargs)

    return wrapper


def use_mongomock(monkeypatch) -> mongomock.MongoClient:
    """Point maggma, FireWorks and pymongo's bulk writes at one mongomock client."""
    import maggma.stores.gridfs
    import maggma.stores.mongolike
    from fireworks.core import launchpad

    client = mongomock.MongoClient()
    mongomock.gridfs.enable_gridfs_integration()

    def connect(*args, **kwargs):
        return client

    for module in (maggma.stores.mongolike, maggma.stores.gridfs, launchpad):
        monkeypatch.setattr(module, "MongoClient", connect)
    for name in ("add_replace", "add_update"):
        method = getattr(BulkOperationBuilder, name)
        if not hasattr(method, "__wrapped__"):
            monkeypatch.setattr(BulkOperationBuilder, name, _without_sort(method))
    return client


def mongo_job_store(database: str = "esen"):
    """The production job store: documents in MongoDB, arrays in GridFS, results beside."""
    from jobflow import JobStore
    from maggma.stores import GridFSStore, MongoStore

    return JobStore(
        MongoStore(database, "outputs"),
        additional_stores={
            "data": GridFSStore(database, "data"),
            "results": MongoStore(database, "results"),
        },
    )

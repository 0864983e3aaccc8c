"""Optuna storages for the search: opening one from a URL, and the RDB fast path.

:func:`open_storage` turns a URL or path into a storage (SQLite by default, any SQLAlchemy URL,
a journal file, or ``memory``); :class:`BulkRDBStorage` is optuna's RDB storage with the
search's hot paths as plain SQL; :func:`finish_trial` and :func:`created_without_rival` use
that fast path where the storage offers it.
"""
from __future__ import annotations

from automtl.search.storage.backends import default_storage_url, list_studies, open_storage, study_exists
from automtl.search.storage.rdb import BulkRDBStorage
from automtl.search.storage.writes import created_without_rival, finish_trial

__all__ = ["BulkRDBStorage", "created_without_rival", "default_storage_url", "finish_trial",
           "list_studies", "open_storage", "study_exists"]

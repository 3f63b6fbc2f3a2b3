"""The tracking store's check before launch: a new SQLite store is created in the background
(while Ray starts), a folder that cannot take it is refused at once."""

from __future__ import annotations

import pytest

from ablate.errors import ConfigError
from ablate.search.driver import check_store


def test_a_new_sqlite_store_in_a_missing_folder_is_refused_at_once(tmp_path):
    with pytest.raises(ConfigError, match="cannot create .*missing/m.db"):
        check_store(f"sqlite:///{tmp_path}/missing/m.db", "--tracking-uri")
    assert not (tmp_path / "missing").exists()


def test_a_new_sqlite_store_is_created_in_the_background(tmp_path):
    ready = check_store(f"sqlite:///{tmp_path}/m.db", "--tracking-uri")
    ready()
    assert (tmp_path / "m.db").is_file()
    check_store(f"sqlite:///{tmp_path}/m.db", "--tracking-uri")()  # now it exists: at once

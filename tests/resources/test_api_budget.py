"""Shared API budgets (resources.api_budget): one per (API, key), kept in SQLite or PostgreSQL."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resources.api_budget import BudgetStore, budget_file, budget_name, close_budgets, store_from

REPO = Path(__file__).resolve().parents[2]
SECRET = "a-very-secret-key-123"


def test_two_limiters_on_one_sqlite_file_share_the_calls(tmp_path):
    # Two spellings of one file: two separate limiter objects, one budget.
    first = BudgetStore(path=str(tmp_path / "rate_limits.sqlite")).budget("owm", "k", 3, 60.0)
    second = BudgetStore(path=f"{tmp_path}/./rate_limits.sqlite").budget("owm", "k", 3, 60.0)
    assert first is not second
    assert [first.acquire(), second.acquire(), first.acquire()] == [0.0, 0.0, 0.0]
    assert not second.try_acquire() and not first.try_acquire()


def test_budgets_are_per_api_and_key(tmp_path):
    store = BudgetStore(path=str(tmp_path / "b.sqlite"))
    assert store.budget("owm", "k1", 1, 60.0).try_acquire()
    assert not store.budget("owm", "k1", 1, 60.0).try_acquire()
    assert store.budget("owm", "k2", 1, 60.0).try_acquire(), "another key, another budget"
    assert store.budget("nasa", "k1", 1, 60.0).try_acquire(), "another API, another budget"


def test_a_spent_budget_waits_for_the_window(tmp_path):
    budget = BudgetStore(path=str(tmp_path / "b.sqlite")).budget("owm", "k", 2, 1.0, guard_s=0.1)
    assert budget.acquire() == budget.acquire() == 0.0
    start = time.monotonic()
    waited = budget.acquire()
    assert 1.0 <= time.monotonic() - start < 2.0
    assert waited == pytest.approx(time.monotonic() - start, abs=0.05)


def test_the_store_holds_a_hash_of_the_key_never_the_key(tmp_path):
    path = tmp_path / "b.sqlite"
    BudgetStore(path=str(path)).budget("OpenWeatherMap", SECRET, 5, 60.0).acquire()
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert budget_name("OpenWeatherMap", SECRET) == f"openweathermap_{digest[:24]}"
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        rows = conn.execute(f'select * from "{tables[0]}"').fetchall()
    assert tables == [f"openweathermap_{digest[:24]}"] and len(rows) == 1
    for file in tmp_path.iterdir():
        assert SECRET.encode() not in file.read_bytes(), file


def test_a_new_process_sees_the_calls_already_spent(tmp_path):
    path = tmp_path / "b.sqlite"
    BudgetStore(path=str(path)).budget("owm", "k", 2, 60.0).acquire()
    code = (
        "from resources.api_budget import BudgetStore\n"
        f"b = BudgetStore(path={str(path)!r}).budget('owm', 'k', 2, 60.0)\n"
        "print(b.try_acquire(), b.try_acquire())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "False"]


def test_store_configuration_errors_are_clear(tmp_path):
    assert store_from(None, None) is None
    assert store_from(tmp_path / "b.sqlite", "  ") == BudgetStore(path=str(tmp_path / "b.sqlite"))
    with pytest.raises(ValueError, match="RATE_LIMIT_DB_URL must be a postgresql://"):
        BudgetStore(db_url="mysql://user:pw@host/db")
    with pytest.raises(ValueError, match="needs calls >= 1"):
        BudgetStore(path=str(tmp_path / "b.sqlite")).budget("owm", "k", 0, 60.0)
    with pytest.raises(ValueError, match="api name"):
        budget_name("!!!", "k")
    store = BudgetStore(db_url="postgresql://u:hunter2@db.example:5433/limits")
    assert "hunter2" not in repr(store) and "hunter2" not in store.where
    assert store.where == "PostgreSQL db.example:5433/limits"
    assert budget_file("data") == str((Path("data") / "rate_limits.sqlite").resolve())


@pytest.fixture
def budget_database(postgres_database):
    """A throwaway database whose pools are closed before it is dropped."""
    yield postgres_database
    close_budgets()


@pytest.mark.integration
def test_two_limiters_on_one_postgresql_database_share_the_calls(budget_database):
    postgres_database = budget_database
    # A SQLAlchemy-style URL (postgresql+psycopg2://), as SQL_DATABASE_URL and the tests use.
    first = BudgetStore(db_url=postgres_database).budget("owm", SECRET, 3, 60.0)
    second = BudgetStore(db_url=postgres_database + "?application_name=second").budget(
        "owm", SECRET, 3, 60.0
    )
    assert first is not second
    assert [first.acquire(), second.acquire(), second.acquire()] == [0.0, 0.0, 0.0]
    assert not first.try_acquire() and not second.try_acquire()
    assert BudgetStore(db_url=postgres_database).budget("owm", "other", 3, 60.0).try_acquire()
    short = BudgetStore(db_url=postgres_database).budget("owm", "short", 1, 1.0, guard_s=0.1)
    assert short.acquire() == 0.0
    assert 0.9 <= short.acquire() < 2.0

"""``summary.json`` records the code that produced a run: the package's version and the commit of its checkout."""

import subprocess

import pytest

from vardiu_pyro import __version__, code_version
from vardiu_pyro.code_version import git_commit


def test_the_commit_of_this_checkout_and_its_uncommitted_changes():
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code_version.ROOT, capture_output=True,
                          text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout (the tree was copied without .git)")
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=code_version.ROOT,
                           capture_output=True, text=True).stdout.strip()
    assert git_commit() == head + (" (with uncommitted changes)" if dirty else "")
    assert code_version.code_version() == {"version": __version__, "commit": git_commit()}


def test_outside_a_checkout_of_this_project_the_commit_is_unknown(tmp_path, monkeypatch):
    """A wheel installed under some other repository does not report that repository's commit."""
    monkeypatch.delenv("VARDIU_COMMIT", raising=False)
    monkeypatch.setattr(code_version, "ROOT", tmp_path)  # no repository at all
    assert git_commit() == "unknown"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "site-packages").mkdir()
    monkeypatch.setattr(code_version, "ROOT", tmp_path / "site-packages")  # inside a repository that is not ours
    assert git_commit() == "unknown"


def test_a_copied_tree_names_its_commit_by_the_environment(monkeypatch):
    monkeypatch.setenv("VARDIU_COMMIT", "abc1234")
    assert git_commit() == "abc1234"

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
    documents = [f":(exclude){p}" for p in code_version.NOT_CODE]
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *documents],
                           cwd=code_version.ROOT, capture_output=True, text=True).stdout.strip()
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


def test_changed_documents_are_not_uncommitted_changes_of_the_code(tmp_path, monkeypatch):
    """A benchmark writes plots and reports into docs/ as it goes; the runs after them still ran committed code."""
    monkeypatch.delenv("VARDIU_COMMIT", raising=False)
    monkeypatch.setattr(code_version, "ROOT", tmp_path)

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "docs" / "results").mkdir(parents=True)
    files = {"pkg.py": "x = 1\n", "README.md": "# r\n", "docs/results/plot.png": "png", "docs/page.md": "p\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    git("add", ".")
    git("commit", "-q", "-m", "c")
    head = git("rev-parse", "--short", "HEAD")
    for name in ("README.md", "docs/results/plot.png", "docs/page.md"):
        (tmp_path / name).write_text("changed")
    (tmp_path / "new.py").write_text("untracked")
    assert git_commit() == head
    (tmp_path / "pkg.py").write_text("x = 2\n")
    assert git_commit() == head + " (with uncommitted changes)"

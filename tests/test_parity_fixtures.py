"""The repository's copy of the parity fixtures is the reference's, byte for byte."""

from __future__ import annotations

import hashlib

from parity_fixtures import FIXTURES, REPO_ROOT

SHARED = REPO_ROOT.parent / "shared" / "fixtures" / "parity"


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_every_fixture_file_matches_its_recorded_checksum():
    recorded = {}
    for line in (FIXTURES / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        recorded[name.removeprefix("./")] = digest
    present = [name for name in _files(FIXTURES) if name != "SHA256SUMS"]
    assert set(present) <= set(recorded), f"files not in SHA256SUMS: {sorted(set(present) - set(recorded))}"
    for name, digest in recorded.items():
        actual = hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()
        assert actual == digest, f"tests/fixtures/parity/{name} differs from the reference copy"
    assert len(recorded) == 1 + 11 + 8 + 14 * 3  # README, model files, media, 14 cases of three files


def test_copy_equals_the_shared_fixtures_when_they_are_beside_the_clone():
    if not SHARED.is_dir():  # a clone alone: the checksums above are the reference
        return
    ours = [n for n in _files(FIXTURES) if n != "SHA256SUMS"]
    theirs = _files(SHARED)
    assert ours == theirs
    for name in theirs:
        assert (FIXTURES / name).read_bytes() == (SHARED / name).read_bytes(), name

"""Result files: a write that fails for lack of room is one sentence and leaves the old file, and no temp file."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from kalab.cli.output import atomic_path, write_text_atomic
from kalab.model.errors import KalabError
from kalab.model.wording import shorten


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_no_room_is_one_sentence_and_the_old_file_stays(tmp_path: Path, code: int) -> None:
    target = tmp_path / "summary.json"
    write_text_atomic(target, "old\n")
    with pytest.raises(KalabError) as failed, atomic_path(target) as temp:
        temp.write_text("half")
        raise OSError(code, "No room")
    message = str(failed.value)
    # The path is shortened like any user-given value; how long it is depends on the user's name (pytest's tmp_path).
    assert message.startswith(f"Writing {shorten(target)} failed (No room); free some space or give another --out")
    assert "\n" not in message
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_other_os_errors_are_not_mistaken_for_a_full_disk(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "run.json"):
        raise FileNotFoundError(errno.ENOENT, "no kernel")
    assert list(tmp_path.iterdir()) == []

"""Trainer checkpoints and the run's final weights: file trees committed by a manifest written last.

    checkpoints/step-NNNNNN/<files>   checkpoints/step-NNNNNN/_COMMITTED
    final/policy/..., final/reward_model/...   final/_COMMITTED

A `TreeManifest` lists every file with its size and CRC32C and names the step whose state the
tree holds; a tree without it is ignored (a trainer that died mid-upload leaves nothing a
successor would trust), and a download checks every file against it. Multi-rank: every rank
uploads its own local files, then rank 0 commits the entries of all of them.

final/ holds the last step's policy and token reward model in HF format, without optimiser states,
since a finished run is not resumed (an interrupted one resumes from the newest checkpoint and
replays the rest).
"""

from __future__ import annotations

from pathlib import Path

from oreal.bucket import layout
from oreal.bucket.errors import CorruptPartError, NotCommittedError
from oreal.bucket.manifest import FileEntry, TreeManifest, file_crc32c
from oreal.bucket.store import ObjectStore


class Checkpoints:
    """Checkpoint and final-weight trees of one run bucket (`Bucket.checkpoints`)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    # -- checkpoints/step-NNNNNN -------------------------------------------------------------------
    def upload(self, step: int, directory: Path, move: bool = False) -> list[FileEntry]:
        """Upload every file under `directory` as checkpoint `step`; returns the manifest entries."""
        return self._upload(layout.checkpoint_dir(step), directory, move)

    def commit(self, step: int, files: list[FileEntry]) -> None:
        self._commit(layout.checkpoint_dir(step), step, files)

    def committed_steps(self) -> list[int]:
        """Steps with a committed checkpoint, ascending."""
        steps = (layout.parse_step_dir(n) for n in self.store.list(layout.CHECKPOINTS))
        found = sorted(s for s in steps if s is not None)
        commits = self.store.get_many([layout.tree_commit(layout.checkpoint_dir(s)) for s in found])
        return [s for s, blob in zip(found, commits, strict=True) if blob is not None]

    def download(self, step: int, directory: Path) -> Path:
        """Download committed checkpoint `step` into `directory`, every file verified."""
        prefix = layout.checkpoint_dir(step)
        manifest = self._manifest(prefix)
        if manifest is None:
            raise NotCommittedError(f"{self.store.url(prefix)}: checkpoint of step {step} is not committed")
        directory = Path(directory)
        for entry in manifest.files:
            target = directory / entry.path
            if (
                target.is_file()
                and target.stat().st_size == entry.size
                and file_crc32c(str(target)) == entry.crc32c
            ):
                continue
            crc = self.store.get_file(f"{prefix}/{entry.path}", str(target), checksum=file_crc32c)
            if crc != entry.crc32c or target.stat().st_size != entry.size:
                target.unlink(missing_ok=True)
                raise CorruptPartError(
                    f"{self.store.url(f'{prefix}/{entry.path}')}: does not match the checkpoint manifest",
                    kind="checkpoint",
                    step=step,
                    part=None,
                )
        return directory

    def prune(self, keep: int) -> None:
        """Keep the newest `keep` committed checkpoints; withdraw each manifest before its files."""
        for step in self.committed_steps()[:-keep]:
            prefix = layout.checkpoint_dir(step)
            self.store.delete(layout.tree_commit(prefix))
            self.store.delete_prefix(prefix)

    # -- final/ ------------------------------------------------------------------------------------
    def upload_final(self, directory: Path, move: bool = False) -> list[FileEntry]:
        return self._upload(layout.FINAL, directory, move)

    def commit_final(self, step: int, files: list[FileEntry]) -> None:
        self._commit(layout.FINAL, step, files)

    def final_step(self) -> int | None:
        """The step whose weights final/ holds, or None while final/ is not committed."""
        manifest = self._manifest(layout.FINAL)
        return None if manifest is None else manifest.step

    # -- shared ------------------------------------------------------------------------------------
    def _upload(self, prefix: str, directory: Path, move: bool) -> list[FileEntry]:
        """Upload every file under `directory` to `prefix`/, CRC32C computed on the way.

        `move`: the caller discards `directory` afterwards, so a local bucket takes the files as
        hard links instead of copies (a checkpoint is GBs: policy, reward model, both AdamW states).
        A tree saved again (final/, or a step trained again after a resume from an older checkpoint)
        loses its manifest first, so nobody trusts it half replaced until it is committed again.
        """
        self.store.delete(layout.tree_commit(prefix))
        directory = Path(directory)
        entries = []
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            rel = path.relative_to(directory).as_posix()
            size = path.stat().st_size
            crc = self.store.put_file(str(path), f"{prefix}/{rel}", checksum=file_crc32c, link=move)
            entries.append(FileEntry(path=rel, size=size, crc32c=crc))
        return entries

    def _commit(self, prefix: str, step: int, files: list[FileEntry]) -> None:
        manifest = TreeManifest(step=step, files=sorted(files, key=lambda f: f.path))
        self.store.put_bytes(layout.tree_commit(prefix), manifest.to_bytes())

    def _manifest(self, prefix: str) -> TreeManifest | None:
        key = layout.tree_commit(prefix)
        data = self.store.get_bytes(key)
        return None if data is None else TreeManifest.from_bytes(data, self.store.url(key))

"""data/raw's images packed into a few tar files, and one way to read an image whatever the layout.

    data/raw/packs/<first isic_id>.tar    the images under isic-cli's names (images/<isic_id>.jpg), in plain
                                          tar files of about PACK_IMAGES images each (see pack())
    data/raw/manifest.csv                 file, pack, offset, size, sha256: where each image's bytes lie

Why packs: DVC hashes a tracked folder file by file on every `dvc status`, once for each stage that names
it; at 100k images a no-op `dvc status` took 10 s (benchmarks/scale.md). A hundred packs take a blink.
Nothing of isic-cli's layout is lost: `skinlesion unpack data/raw DEST` writes isic-cli's flat folder (the
images at the top, the small files beside them), checking every sha256 (`tar -xf` of each pack in DEST gives
the images under images/, unchecked; never extract inside data/raw, a DVC output), and folders in isic-cli's layout (external sets, a user's
download) are read as they are. Packs are written deterministically (sorted names, zero times and owners),
so the same images make the same pack bytes and the same DVC hash; where a pack ends depends only on the
names around it, so adding or removing images rewrites only the packs they fall in, not every later one.

Every read of a packed image checks its size and sha256 against the manifest: a pack changed behind the
manifest's back is one error naming the pack, never a silently different image. A manifest's names are
checked against raw_layout.ISIC_ID (never a path); pack() and unpack() read only regular files, opened
without following a link (io.open_regular), and stream each image in blocks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import PipelineError
from .io import COPY_BLOCK, NotFollowed, copy_stream, describe_link, open_regular

PACKS = "packs"
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ["file", "pack", "offset", "size", "sha256"]
UNPACKED = "unpacked.json"  # what `skinlesion unpack` writes beside images/: its mark
PACK_IMAGES = 1000  # images per pack, on average (pack boundaries: _ends_pack)
PACK_BYTES = 256 * 2**20  # a pack also ends once it holds this many bytes (archive images of several MB)
MAX_MANIFEST_ROWS = 10_000_000  # bounded read: ten times the whole ISIC archive
MAX_IMAGE_BYTES = 2**30  # no image of the archive comes near; a larger size is not a manifest the fetch wrote
UNPACK_HINT = "it is a packed raw folder (manifest.csv, packs/): `skinlesion unpack FOLDER DEST` writes isic-cli's layout"


class DamagedPack(PipelineError):
    """A packed image whose bytes are not the ones the manifest records (fetch again)."""


@dataclass(frozen=True)
class ImageRef:
    """Where one image's bytes are: a plain file (offset -1), or `size` bytes at `offset` in a pack.
    Picklable, so decoding processes get the reference rather than the bytes."""

    name: str  # the file name, <isic_id>.<suffix>
    path: str  # the file itself, or its pack
    offset: int = -1
    size: int = -1
    sha256: str = ""

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def packed(self) -> bool:
        return self.offset >= 0

    def __str__(self) -> str:
        return f"{self.path}:images/{self.name}" if self.packed else self.path

    def read_bytes(self) -> bytes:
        if not self.packed:
            return Path(self.path).read_bytes()
        try:
            with open(self.path, "rb") as fh:
                if self.offset + self.size > os.fstat(fh.fileno()).st_size:
                    data = b""  # past the pack's end: cut short (and never a read the manifest sized)
                else:
                    fh.seek(self.offset)
                    data = fh.read(self.size)
        except OSError as exc:
            raise DamagedPack(f"cannot read {self} ({exc.strerror or exc}): fetch again (skinlesion fetch).") from None
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.sha256:
            raise DamagedPack(f"{self} is not the image {MANIFEST} records (the pack was changed or cut short): "
                              "fetch again (skinlesion fetch, or dvc checkout).")
        return data

    def fp(self):
        """What PIL.Image.open takes: a plain file's path, a packed image's checked bytes."""
        return io.BytesIO(self.read_bytes()) if self.packed else self.path


def _ends_pack(name: str, pack_images: int) -> bool:
    """Whether a pack ends after this image: decided by the name alone (1 in pack_images names), so that
    a pack's content depends only on the images between two such names. Adding or removing images then
    changes only the packs they fall in, and DVC re-caches and re-pushes those, not every later pack."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % pack_images == 0


def pack(raw_dir: str | os.PathLike, pack_images: int = PACK_IMAGES, pack_bytes: int = PACK_BYTES) -> int:
    """Move raw_dir/images/* into raw_dir/packs/*.tar and record them in raw_dir/manifest.csv; images/ goes.

    Images go in name order; a pack ends after a name _ends_pack picks (about one in `pack_images`) or once
    it holds `pack_bytes`. Run by the fetch stage on its own temporary folder, so a failure leaves nothing
    behind. Returns the number of images packed."""
    raw_dir = Path(raw_dir)
    folder, packs = raw_dir / "images", raw_dir / PACKS
    names = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_symlink():  # no source writes one: never pack what a link points at
                raise NotFollowed(f"{describe_link(Path(entry.path))}: the fetch packs regular files only, and "
                                  "follows no link; nothing was kept.")
            if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
                names.append(entry.name)
    names.sort()
    packs.mkdir()
    rows: list[list] = []
    start = 0
    while start < len(names):
        # named after its first image (an id every source has checked): a pack keeps its name when images
        # are added or removed elsewhere
        path = packs / f"{Path(names[start]).stem}.tar"
        if path.exists():  # X.jpg ended a pack and X.png starts the next: one id, two images
            raise PipelineError(f"two images share the id {path.stem} ({names[start - 1]}, {names[start]}); "
                                "nothing was kept.")
        stop, written = start, 0
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            while stop < len(names):  # at least one image a pack; it ends after a chosen name or at pack_bytes
                source = folder / names[stop]
                size, sha = _add_member(tar, raw_dir, source)
                rows.append([names[stop], f"{PACKS}/{path.name}", -1, size, sha])
                source.unlink()  # the bytes are in the pack now: the folder never holds the images twice
                stop, written = stop + 1, written + size
                if _ends_pack(names[stop - 1], pack_images) or written >= pack_bytes:
                    break
        # The data offsets as tarfile reads them back (authoritative, whatever header the name needed).
        with tarfile.open(path) as tar:
            for row, member in zip(rows[start:stop], tar.getmembers(), strict=True):
                row[2] = member.offset_data
        start = stop
    with open(raw_dir / MANIFEST, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    leftover = next(folder.iterdir(), None)
    if leftover is not None:  # sources.fetch refuses such names first; never drop a file silently
        raise PipelineError(f"{leftover} is not an image file the fetch can pack; nothing was kept.")
    folder.rmdir()
    return len(rows)


class _Hashing:
    """A file object's reads, hashed on the way (tarfile copies a member from it in blocks)."""

    def __init__(self, fh):
        self.fh, self.digest = fh, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.digest.update(data)
        return data


def _add_member(tar: tarfile.TarFile, raw_dir: Path, source: Path) -> tuple[int, str]:
    """source (a regular file of raw_dir, opened without following a link) as images/<name> in tar, streamed
    in blocks: its size and sha256."""
    fd = open_regular(source, raw_dir, "the fetch packs regular files only; nothing was kept")
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_IMAGE_BYTES:
            raise PipelineError(f"{source} holds {size} bytes, more than an image of the archive "
                                f"({MAX_IMAGE_BYTES}); nothing was kept.")
        info = tarfile.TarInfo(f"images/{source.name}")
        info.size, info.mode, info.mtime = size, 0o644, 0
        reader = _Hashing(fh)
        tar.addfile(info, reader)  # exactly `size` bytes, in blocks; a file that shrank meanwhile is an error
    return size, reader.digest.hexdigest()


def _read_manifest(raw_dir: Path) -> list[ImageRef]:
    path = raw_dir / MANIFEST
    refs, seen, line = [], set(), 1
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            if next(reader, None) != MANIFEST_COLUMNS:
                raise PipelineError(f"{path}: not a manifest of {', '.join(MANIFEST_COLUMNS)}; fetch again.")
            for line, row in enumerate(reader, start=2):
                if line > MAX_MANIFEST_ROWS + 1:
                    raise PipelineError(f"{path}: more than {MAX_MANIFEST_ROWS} rows; not a manifest the fetch wrote.")
                refs.append(_manifest_row(raw_dir, path, line, row, seen))
    except (csv.Error, UnicodeDecodeError) as exc:  # an endless field, bytes that are not UTF-8
        raise PipelineError(f"{path} line {line + 1}: cannot be read as the fetch's manifest "
                            f"({type(exc).__name__}); fetch again.") from None
    return refs


def _manifest_row(raw_dir: Path, path: Path, line: int, row: list[str], seen: set[str]) -> ImageRef:
    """One manifest row as an ImageRef, or one error naming the line. Everything in it is untrusted: a file
    name is a plain <id>.<suffix> (unique), a pack is packs/<name>.tar, an offset is a tar block boundary
    and a size is one an image can have."""
    try:
        name, pack_name, offset, size, sha = row
        ref = ImageRef(name, str(raw_dir / pack_name), int(offset), int(size), sha)
    except ValueError:
        raise PipelineError(f"{path} line {line}: expected {len(MANIFEST_COLUMNS)} fields "
                            f"({', '.join(MANIFEST_COLUMNS)}); fetch again.") from None
    from .raw_layout import IMAGE_SUFFIXES, ISIC_ID, id_problem  # raw_layout imports this module

    stem, suffix = os.path.splitext(name)
    if id_problem(stem) or suffix.lower() not in IMAGE_SUFFIXES:  # never a path: no slash, no dot, no `..`
        raise PipelineError(f"{path} line {line}: {name[:80]!r} is not an image name (<isic_id>.jpg, .jpeg or "
                            f".png, the id matching {ISIC_ID.pattern}); fetch again.")
    pack_stem = pack_name[len(PACKS) + 1:].removesuffix(".tar")
    if not pack_name.startswith(f"{PACKS}/") or not pack_name.endswith(".tar") or id_problem(pack_stem):
        raise PipelineError(f"{path} line {line}: {pack_name[:80]!r} is not a pack name ({PACKS}/<isic_id>.tar); "
                            "fetch again.")
    if name in seen or ref.offset < 0 or ref.offset % tarfile.BLOCKSIZE or not 0 <= ref.size <= MAX_IMAGE_BYTES:
        raise PipelineError(f"{path} line {line}: {name!r} in {pack_name!r} at {offset}, {size} bytes is not an "
                            "image of data/raw's packs (or is listed twice); fetch again.")
    seen.add(name)
    return ref


def is_packed(folder: str | os.PathLike) -> bool:
    """A raw folder the fetch stage packed (manifest.csv beside packs/)."""
    return (Path(folder) / MANIFEST).is_file() and (Path(folder) / PACKS).is_dir()


def image_refs(raw_dir: str | os.PathLike, suffixes: tuple[str, ...]) -> list[ImageRef]:
    """Every image of a raw folder, packed (manifest.csv) or in isic-cli's images/ folder, sorted by name."""
    raw_dir = Path(raw_dir)
    if is_packed(raw_dir):
        refs = _read_manifest(raw_dir)
    else:
        folder = raw_dir / "images"
        if not folder.is_dir():
            raise PipelineError(f"{folder} not found (nor {raw_dir / MANIFEST} and {raw_dir / PACKS}/): the fetch "
                                "stage writes them (skinlesion fetch).")
        refs = [ImageRef(p.name, str(p)) for p in folder.iterdir() if not p.name.startswith(".")]
    return sorted((r for r in refs if Path(r.name).suffix.lower() in suffixes), key=lambda r: r.name)


def unpack(raw_dir: str | os.PathLike, dest: str | os.PathLike, suffixes: tuple[str, ...]) -> int:
    """Write raw_dir in isic-cli's flat layout to dest, atomically: <isic_id>.jpg at the top, each checked
    against its sha256, raw_dir's other files (metadata.csv, attribution.txt, licenses/, source.json) and
    UNPACKED, the mark that lets a later unpack replace dest (no other folder is ever replaced). Returns the
    number of images.

    raw_dir is read, not followed: every file is opened below it without following a link (io.open_regular)
    and a symbolic link anywhere in it is refused, one line naming it, before dest is touched (a pack linked
    to /etc/passwd would put its bytes in dest). Images are streamed to disk in blocks (io.copy_stream), each
    within MAX_IMAGE_BYTES, so a huge (or sparse) member never sits in memory."""
    from tqdm import tqdm

    from .io import atomic_path, write_json

    raw_dir, dest = Path(raw_dir), Path(dest)
    a, b = raw_dir.resolve(), dest.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise PipelineError(f"{dest} is {raw_dir} or inside it (or holds it): unpack into a folder of its own.")
    refs = image_refs(raw_dir, suffixes)
    others = _other_files(raw_dir, raw_dir)  # every link refused here, before anything is written
    for ref in {r.path: r for r in refs if r.packed}.values():  # and every pack (each image checked as it goes)
        _open_in(raw_dir, ref).close()
    # Flat, an image and another file of raw_dir would share a name; compared case-folded, as a
    # case-insensitive file system (macOS, Windows) would see X.JPG beside X.jpg.
    names = {r.name.casefold() for r in refs} | {UNPACKED}
    clash = next((p for p in others if p.parent == raw_dir and p.name.casefold() in names), None)
    if clash is not None:
        raise PipelineError(f"{clash} has the name of a file unpack writes itself (letter case aside); move it "
                            f"out of {raw_dir}.")
    folded = Counter(r.name.casefold() for r in refs)
    same = [r.name for r in refs if folded[r.name.casefold()] > 1]
    if same:  # two images whose names differ only in letter case
        raise PipelineError(f"{raw_dir} holds images whose names differ only in letter case ({', '.join(same[:2])}): "
                            f"one file on a case-insensitive file system; keep one.")
    with atomic_path(dest, mark=UNPACKED) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        source = None  # (path, file object) of the pack being read: refs come in name order, packs in runs
        try:
            for ref in tqdm(refs, desc="unpack", unit="img"):
                if source is None or source[0] != ref.path:
                    if source is not None:
                        source[1].close()
                    source = (ref.path, _open_in(raw_dir, ref))
                _write_image(ref, source[1], tmp / ref.name)
        finally:
            if source is not None:
                source[1].close()
        for item in others:
            target = tmp / item.relative_to(raw_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            with os.fdopen(open_regular(item, raw_dir, UNPACK_FIX), "rb") as fh, open(target, "xb") as out:
                shutil.copyfileobj(fh, out, COPY_BLOCK)
        write_json(tmp / UNPACKED, {"unpacked_from": str(raw_dir), "images": len(refs)})
    return len(refs)


# What to do about a link in a folder to unpack (or a file that is not a regular file).
UNPACK_FIX = ("unpack reads only the regular files inside the folder it is given and follows no link; replace the "
              "link by the file itself (where DVC checked data/raw out as links, cache.type symlink: "
              "`dvc config cache.type copy` then `dvc checkout --relink`)")


def _other_files(raw_dir: Path, folder: Path) -> list[Path]:
    """raw_dir's files besides the images (metadata.csv, attribution.txt, licenses/*, source.json), sorted;
    NotFollowed for a symbolic link or anything but a file or a folder."""
    found = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") or (folder == raw_dir and entry.name in (PACKS, MANIFEST, "images",
                                                                                     UNPACKED)):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                raise NotFollowed(f"{describe_link(path)}: {UNPACK_FIX}.")
            if entry.is_dir(follow_symlinks=False):
                found.extend(_other_files(raw_dir, path))
            elif entry.is_file(follow_symlinks=False):
                found.append(path)
            else:
                raise NotFollowed(f"{path} is not a regular file: {UNPACK_FIX}.")
    return found


def _open_in(raw_dir: Path, ref: ImageRef):
    """ref's pack (or plain file) opened below raw_dir without following a link."""
    try:
        return os.fdopen(open_regular(ref.path, raw_dir, UNPACK_FIX), "rb")
    except PipelineError:
        raise
    except OSError as exc:
        raise DamagedPack(f"cannot read {ref} ({exc.strerror or exc}): fetch again (skinlesion fetch).") from None


def _write_image(ref: ImageRef, fh, target: Path) -> None:
    """ref's bytes from fh (its pack, or its plain file) to target, streamed in blocks and checked against the
    manifest's size and sha256 (a plain file: within MAX_IMAGE_BYTES)."""
    total = os.fstat(fh.fileno()).st_size
    if ref.packed:
        offset, size = ref.offset, ref.size
        if offset + size > total:
            raise DamagedPack(f"{ref} is not the image {MANIFEST} records (the pack was changed or cut short): "
                              "fetch again (skinlesion fetch, or dvc checkout).")
    elif total > MAX_IMAGE_BYTES:
        raise PipelineError(f"{ref} holds {total} bytes, more than an image of the archive ({MAX_IMAGE_BYTES}): "
                            "not an image of a raw folder.")
    else:
        offset, size = 0, total
    fh.seek(offset)
    digest = hashlib.sha256()
    with open(target, "xb") as out:
        done = copy_stream(fh, out, size, digest)
    if ref.packed and (done != size or digest.hexdigest() != ref.sha256):
        raise DamagedPack(f"{ref} is not the image {MANIFEST} records (the pack was changed or cut short): "
                          "fetch again (skinlesion fetch, or dvc checkout).")
    if done != size:
        raise PipelineError(f"{ref} changed while it was read (expected {size} bytes): unpack again.")

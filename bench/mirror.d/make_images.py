#!/usr/bin/env python3
"""Writes the bench/mirror image set as one OCI layout.

  make_images.py LAYOUT BIG_IMAGES SMALL_IMAGES

- BIG_IMAGES images `big-NN` (at least 2): every one has the same 128 MiB base layer and a
  96 MiB layer of its own, except the last, whose own layer is 1 GiB;
- SMALL_IMAGES images `small-NNN`: a shared 4 MiB base layer and a 256 KiB layer of their own.

Layers are real tar.gz files holding one file of random bytes (gzip "stored" blocks: random
bytes do not compress, and stored blocks are quick to write), so every tool copies them as
they are. Each image is tagged in index.json by its name; `skopeo copy oci:LAYOUT:NAME`
reads one. The layout is written once: a `.done` file with the parameters marks it complete.
"""
import gzip, hashlib, json, os, random, sys, tarfile

MIB = 1024 * 1024


def main():
    layout, big, small = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    stamp = os.path.join(layout, ".done")
    want = f"{big} {small}\n"
    if os.path.exists(stamp) and open(stamp).read() == want:
        return
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    rng = random.Random(20261204)
    entries = []

    def blob(data: bytes, media_type: str):
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(layout, "blobs", "sha256", digest)
        if not os.path.exists(path):
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.rename(path + ".tmp", path)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    def layer(name: str, size: int):
        # Streamed to a file through two hashes (the blob's digest and the tar's diff_id):
        # the 1 GiB layer never sits in memory.
        tmp = os.path.join(layout, "blobs", "layer.tmp")
        with open(tmp, "wb") as out:
            compressed = Hashing(out)
            with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=0, mtime=0) as gz:
                tar_stream = Hashing(gz)
                with tarfile.open(fileobj=tar_stream, mode="w|", copybufsize=8 * MIB) as tar:
                    info = tarfile.TarInfo(name)
                    info.size = size
                    info.mode = 0o644
                    tar.addfile(info, RandomReader(rng, size))
        digest = compressed.hash.hexdigest()
        os.rename(tmp, os.path.join(layout, "blobs", "sha256", digest))
        desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": f"sha256:{digest}", "size": compressed.size}
        return desc, f"sha256:{tar_stream.hash.hexdigest()}"

    def image(name: str, layers):
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/true"], "Labels": {"bench": name}},
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
        }, sort_keys=True).encode()
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": blob(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [desc for desc, _ in layers],
        }, sort_keys=True).encode()
        desc = blob(manifest, "application/vnd.oci.image.manifest.v1+json")
        desc["annotations"] = {"org.opencontainers.image.ref.name": name}
        entries.append(desc)

    base = layer("base.bin", 128 * MIB)
    for i in range(1, big + 1):
        size = 1024 * MIB if i == big else 96 * MIB
        image(f"big-{i:02d}", [base, layer(f"own-{i}.bin", size)])
    small_base = layer("small-base.bin", 4 * MIB)
    for i in range(1, small + 1):
        image(f"small-{i:03d}", [small_base, layer(f"small-{i}.bin", 256 * 1024)])
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": entries}, f)
    with open(stamp, "w") as f:
        f.write(want)


class Hashing:
    """A write-only stream that hashes and counts what passes through to `inner`."""

    def __init__(self, inner):
        self.inner, self.hash, self.size = inner, hashlib.sha256(), 0

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)
        return self.inner.write(data)

    def flush(self):
        self.inner.flush()


class RandomReader:
    """A file-like source of `size` pseudo-random bytes (tarfile reads it in pieces)."""

    def __init__(self, rng, size):
        self.rng, self.left = rng, size

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return self.rng.randbytes(n)


if __name__ == "__main__":
    main()

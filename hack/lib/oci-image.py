#!/usr/bin/env python3
"""Writes a one-layer OCI image archive without Docker or a registry, reproducibly.

    oci-image.py --name localhost/vbs-operator:dev --out image.tar \
        --file /vbs-operator=target/.../vbs-operator:0755 \
        --file /etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt:0644 \
        --text /etc/passwd='root:x:0:0::/:/sbin/nologin\n...':0644 \
        --dir /tmp:1777 --user 65532:65532 --entrypoint /vbs-operator --cmd run --port 8080

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that also carries a
Docker-style manifest.json, so `ctr -n k8s.io images import` and `docker load` both take it.
Everything that could vary between builds is fixed: file order, owners (0:0), modes, and times
(SOURCE_DATE_EPOCH, default 0). The same inputs give the same image digest.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="fully qualified image name, e.g. localhost/vbs-operator:dev")
    p.add_argument("--out", required=True)
    p.add_argument("--file", action="append", default=[], help="PATH_IN_IMAGE=HOST_PATH:MODE")
    p.add_argument("--text", action="append", default=[], help="PATH_IN_IMAGE=CONTENT:MODE (\\n escapes)")
    p.add_argument("--dir", action="append", default=[], help="PATH_IN_IMAGE:MODE")
    p.add_argument("--user", default="")
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--port", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    return p.parse_args()


def split_mode(spec):
    body, _, mode = spec.rpartition(":")
    if not body:
        sys.exit(f"oci-image: {spec!r} needs a :MODE suffix")
    return body, int(mode, 8)


def layer_tar(args, mtime):
    """The root filesystem as an uncompressed tar, entries sorted, parents created as needed."""
    entries = {}  # path in image (no leading /) -> (TarInfo, bytes or None)

    def add_dir(path, mode=0o755):
        path = path.strip("/")
        if not path or path in entries:
            return
        add_dir(os.path.dirname(path))
        info = tarfile.TarInfo(path)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        entries[path] = (info, None)

    def add_file(path, data, mode):
        path = path.strip("/")
        add_dir(os.path.dirname(path))
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = mode
        entries[path] = (info, data)

    for spec in args.dir:
        path, mode = split_mode(spec)
        add_dir(path, mode)
        entries[path.strip("/")][0].mode = mode
    for spec in args.file:
        target, _, rest = spec.partition("=")
        host, mode = split_mode(rest)
        with open(host, "rb") as f:
            add_file(target, f.read(), mode)
    for spec in args.text:
        target, _, rest = spec.partition("=")
        content, mode = split_mode(rest)
        add_file(target, content.encode().decode("unicode_escape").encode(), mode)

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            info, data = entries[path]
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return digest, data


def main():
    args = parse_args()
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = "1970-01-01T00:00:00Z" if mtime == 0 else None
    if created is None:
        import datetime

        created = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    layer = layer_tar(args, mtime)
    layer_digest, _ = blob(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": args.user,
            "Entrypoint": args.entrypoint or None,
            "Cmd": args.cmd or None,
            "Env": args.env or ["PATH=/"],
            "ExposedPorts": {f"{p}/tcp": {} for p in args.port} or None,
            "Labels": dict(kv.split("=", 1) for kv in args.label) or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created, "created_by": "hack/lib/oci-image.py"}],
    }
    config["config"] = {k: v for k, v in config["config"].items() if v not in (None, "")}
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest, _ = blob(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest, _ = blob(manifest_bytes)
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": "blobs/sha256/" + config_digest.split(":")[1],
            "RepoTags": [args.name],
            "Layers": ["blobs/sha256/" + layer_digest.split(":")[1]],
        }
    ]
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True, separators=(",", ":")).encode(),
        "manifest.json": json.dumps(docker_manifest, sort_keys=True, separators=(",", ":")).encode(),
    }
    for digest, data in (blob(layer), blob(config_bytes), blob(manifest_bytes)):
        files["blobs/sha256/" + digest.split(":")[1]] = data

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = mtime
            tar.addfile(info)
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size = len(files[path])
            info.mode = 0o644
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(files[path]))
    os.replace(tmp, args.out)
    print(manifest_digest)


if __name__ == "__main__":
    main()

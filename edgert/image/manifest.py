"""Image manifests, indexes and configs: parsing, validation, platform choice, chain IDs.

Every document comes from an untrusted registry or archive, so parsing is strict:
- size limits (MAX_MANIFEST_SIZE, MAX_CONFIG_SIZE) and at most MAX_INDEX_ENTRIES entries;
- duplicate JSON keys are refused (two parsers could read different values);
- a document's kind must be unambiguous (CVE-2021-41190): a manifest has ``config`` and
  ``layers`` and no ``manifests``, an index the reverse, and its ``mediaType`` (when present)
  agrees with the Content-Type it was served with and with the descriptor that pointed at it;
- Docker schema 1 is refused: it is unsigned in practice and deprecated everywhere.
Indexes may point at indexes; callers stop at MAX_INDEX_DEPTH (see ``check_depth``).
"""

import hashlib

from .. import jsonfast
from ..errors import ConfigError, NotFound, Unsupported
from . import digest as _digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
# The tar layer media types a manifest may list (the unpacker maps each to its compression).
LAYER_TYPES = frozenset((
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
))
# Media types that say nothing about the kind of document (some servers send these).
_GENERIC_TYPES = ("", "application/json", "application/octet-stream", "text/plain")

MAX_MANIFEST_SIZE = 4 << 20
MAX_CONFIG_SIZE = 8 << 20
MAX_INDEX_ENTRIES = 1000
MAX_LAYERS = 500
MAX_INDEX_DEPTH = 2

# edgert's architecture names -> (OCI architecture, accepted variants, preferred variant).
ARCHES = {
    "amd64": ("amd64", ("", "v1"), ""),
    "armhf": ("arm", ("v7", ""), "v7"),  # arm without a variant means v7 by convention
    "arm64": ("arm64", ("v8", ""), "v8"),
    "ppc64le": ("ppc64le", ("",), ""),
}
_ARCH_ALIASES = {
    "x86_64": "amd64", "arm/v7": "armhf", "armv7l": "armhf", "armv7": "armhf", "arm": "armhf",
    "aarch64": "arm64", "arm64/v8": "arm64", "ppc64el": "ppc64le",
}
_MACHINES = {"x86_64": "amd64", "armv7l": "armhf", "armv8l": "armhf", "aarch64": "arm64",
             "ppc64le": "ppc64le"}


class Descriptor:
    """A content descriptor: media type, digest, size, optional platform and annotations."""

    __slots__ = ("media_type", "digest", "size", "platform", "annotations", "urls")

    def __init__(self, media_type, digest, size, platform=None, annotations=None, urls=None):
        self.media_type = media_type
        self.digest = digest
        self.size = size
        self.platform = platform
        self.annotations = annotations or {}
        self.urls = urls or []

    def __repr__(self):
        return "Descriptor(%r, %r, %d)" % (self.media_type, self.digest, self.size)


class Manifest:
    """An image manifest: its media type, config descriptor and layer descriptors."""

    kind = "manifest"

    def __init__(self, media_type, config, layers, annotations):
        self.media_type = media_type
        self.config = config
        self.layers = layers
        self.annotations = annotations


class Index:
    """An image index (or Docker manifest list): its media type and entries."""

    kind = "index"

    def __init__(self, media_type, manifests, annotations):
        self.media_type = media_type
        self.manifests = manifests
        self.annotations = annotations


class Platform:
    """An OCI platform: os, architecture, variant ("" when none)."""

    __slots__ = ("os", "architecture", "variant")

    def __init__(self, os, architecture, variant=""):
        self.os = os
        self.architecture = architecture
        self.variant = variant

    def __str__(self):
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def __repr__(self):
        return "Platform(%r)" % str(self)

    def __eq__(self, other):
        return isinstance(other, Platform) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


def arch_name(name):
    """edgert's name (amd64, armhf, arm64, ppc64le) for ``name`` or one of its aliases."""
    canonical = _ARCH_ALIASES.get(name, name)
    if canonical not in ARCHES:
        raise Unsupported("architecture %r: edgert supports %s" % (name, ", ".join(ARCHES)))
    return canonical


def host_arch(machine):
    """edgert's architecture name for ``os.uname().machine``."""
    try:
        return _MACHINES[machine]
    except KeyError:
        raise Unsupported("machine %r: no image architecture known for it (give --arch %s)"
                          % (machine, "|".join(ARCHES))) from None


def platform_for(arch):
    """The OCI Platform an edgert architecture name asks for (armhf -> linux/arm/v7)."""
    architecture, _, variant = ARCHES[arch_name(arch)]
    return Platform("linux", architecture, variant)


def platform_matches(platform, arch):
    """Whether an image ``platform`` runs on edgert architecture ``arch``."""
    architecture, variants, _ = ARCHES[arch_name(arch)]
    return (platform.os == "linux" and platform.architecture == architecture
            and platform.variant in variants)


def select(index, arch, image):
    """The descriptor in ``index`` for ``arch``; NotFound listing what the image has.

    An entry with the preferred variant wins over one without a variant (arm64/v8 over
    arm64); among equals the first listed wins, as in containerd.
    """
    _, _, preferred = ARCHES[arch_name(arch)]
    best = None
    for entry in index.manifests:
        if entry.platform is not None and platform_matches(entry.platform, arch):
            if entry.platform.variant == preferred:
                return entry
            best = best or entry
    if best is not None:
        return best
    has = []
    for entry in index.manifests:
        label = str(entry.platform) if entry.platform else "unknown"
        if label not in has and label != "unknown/unknown":  # unknown: build attestations
            has.append(label)
    raise NotFound("image %s has no %s variant (has: %s)" % (
        image, platform_for(arch), ", ".join(has) or "no platforms"))


def check_depth(depth, image):
    """Raises ConfigError when following indexes would go deeper than MAX_INDEX_DEPTH."""
    if depth > MAX_INDEX_DEPTH:
        raise ConfigError("image %s: indexes nested more than %d deep" % (image, MAX_INDEX_DEPTH))


def parse(data, media_type=None, expected=None, name="manifest"):
    """A Manifest or Index from the bytes ``data``.

    ``media_type`` is the Content-Type it was served with (None for a file); ``expected`` the
    media type of the descriptor that pointed at it. ``name`` goes into errors.
    """
    media_type = _bare_type(media_type)
    if len(data) > MAX_MANIFEST_SIZE:
        raise ConfigError("%s: %d bytes is over the %d-byte limit for manifests"
                          % (name, len(data), MAX_MANIFEST_SIZE))
    if media_type in DOCKER_SCHEMA1 or expected in DOCKER_SCHEMA1:
        raise _schema1(name)
    doc = _load_json(data, name)
    version = doc.get("schemaVersion")
    if isinstance(version, bool) or version not in (1, 2):
        raise ConfigError("%s: schemaVersion must be 2, got %s" % (name, jsonfast.dumps(version)))
    if version == 1:
        raise _schema1(name)
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ConfigError("%s: mediaType must be a string" % name)
    kind = _kind_of(doc, name)
    claims = [(declared, "its mediaType"), (media_type, "the Content-Type"),
              (expected, "the descriptor's mediaType")]
    claims = [(t, source) for t, source in claims if t not in _GENERIC_TYPES and t is not None]
    for value, source in claims:
        if value in DOCKER_SCHEMA1:
            raise _schema1(name)
        if value not in MANIFEST_TYPES + INDEX_TYPES:
            raise Unsupported("%s: %s %r is not an image manifest or index"
                              % (name, source, value))
        if (value in INDEX_TYPES) != (kind == "index"):
            raise ConfigError("%s: ambiguous: %s says %s but the document is an %s"
                              % (name, source, value, kind))
        if value != claims[0][0]:
            raise ConfigError("%s: ambiguous: %s %s does not match %s %s"
                              % (name, claims[0][1], claims[0][0], source, value))
    if claims:
        resolved = claims[0][0]
    else:
        resolved = OCI_INDEX if kind == "index" else OCI_MANIFEST
    annotations = _annotations(doc.get("annotations"), name)
    if kind == "index":
        entries = doc["manifests"]
        if not isinstance(entries, list):
            raise ConfigError("%s: manifests must be a list" % name)
        if len(entries) > MAX_INDEX_ENTRIES:
            raise ConfigError("%s: %d entries is over the limit of %d"
                              % (name, len(entries), MAX_INDEX_ENTRIES))
        manifests = [_descriptor(entry, "%s: manifests[%d]" % (name, i))
                     for i, entry in enumerate(entries)]
        for i, entry in enumerate(manifests):
            if entry.media_type in DOCKER_SCHEMA1:
                raise _schema1("%s: manifests[%d]" % (name, i))
        return Index(resolved, manifests, annotations)
    config = _descriptor(doc.get("config"), name + ": config")
    if config.media_type not in CONFIG_TYPES:
        raise Unsupported("%s: config mediaType %r: not a container image (an artifact?)"
                          % (name, config.media_type))
    layers = doc["layers"]
    if not isinstance(layers, list):
        raise ConfigError("%s: layers must be a list" % name)
    if len(layers) > MAX_LAYERS:
        raise ConfigError("%s: %d layers is over the limit of %d"
                          % (name, len(layers), MAX_LAYERS))
    descriptors = []
    for i, layer in enumerate(layers):
        where = "%s: layers[%d]" % (name, i)
        descriptor = _descriptor(layer, where)
        if descriptor.media_type not in LAYER_TYPES:
            raise Unsupported("%s: layer mediaType %r is not a tar layer edgert can unpack"
                              % (where, descriptor.media_type))
        descriptors.append(descriptor)
    return Manifest(resolved, config, descriptors, annotations)


class ImageConfig:
    """The parts of an image config edgert uses, plus the whole document as ``doc``."""

    def __init__(self, doc, platform, diff_ids):
        self.doc = doc
        self.platform = platform
        self.diff_ids = diff_ids
        self.config = doc.get("config") or {}

    @property
    def chain_ids(self):
        return chain_ids(self.diff_ids)


def parse_config(data, layer_count, name="config"):
    """An ImageConfig from ``data``; its diff IDs must match the manifest's ``layer_count``."""
    if len(data) > MAX_CONFIG_SIZE:
        raise ConfigError("%s: %d bytes is over the %d-byte limit for image configs"
                          % (name, len(data), MAX_CONFIG_SIZE))
    doc = _load_json(data, name)
    os_name, architecture = doc.get("os"), doc.get("architecture")
    variant = doc.get("variant", "")
    for field, value in (("os", os_name), ("architecture", architecture), ("variant", variant)):
        if not isinstance(value, str):
            raise ConfigError("%s: %s must be a string" % (name, field))
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ConfigError('%s: rootfs.type must be "layers"' % name)
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise ConfigError("%s: rootfs.diff_ids must be a list" % name)
    for i, diff_id in enumerate(diff_ids):
        problem = _digest.problem_of(diff_id)
        if problem:
            raise ConfigError("%s: rootfs.diff_ids[%d]: %s" % (name, i, problem))
    if len(diff_ids) != layer_count:
        raise ConfigError("%s: %d diff IDs for %d layers: the image is inconsistent"
                          % (name, len(diff_ids), layer_count))
    config = doc.get("config")
    if config is not None and not isinstance(config, dict):
        raise ConfigError("%s: config must be an object" % name)
    return ImageConfig(doc, Platform(os_name, architecture, variant), diff_ids)


def check_config_platform(config, arch, image):
    """NotFound when the config's platform does not run on ``arch`` (a single-arch image for
    another machine, or an index entry whose platform lies)."""
    if not platform_matches(config.platform, arch):
        raise NotFound("image %s has no %s variant (has: %s)"
                       % (image, platform_for(arch), config.platform))


def chain_ids(diff_ids):
    """The chain ID of each layer stack: ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n))."""
    chain = []
    for diff_id in diff_ids:
        if chain:
            text = "%s %s" % (chain[-1], diff_id)
            diff_id = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        chain.append(diff_id)
    return chain


def _schema1(name):
    return Unsupported("%s: Docker schema 1 manifests are not supported: push the image "
                       "again with a current client (schema 2 or OCI)" % name)


def _bare_type(media_type):
    return media_type.partition(";")[0].strip().lower() if media_type else media_type


def _load_json(data, name):
    try:
        doc = jsonfast.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as e:
        raise ConfigError("%s: not UTF-8 (bad byte at offset %d)" % (name, e.start)) from None
    except ValueError as e:
        raise ConfigError("%s: invalid JSON: %s" % (name, e)) from None
    if not isinstance(doc, dict):
        raise ConfigError("%s: must be a JSON object" % name)
    return doc


def _unique_keys(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError("duplicate key %r" % key)
            seen.add(key)
    return obj


def _kind_of(doc, name):
    has_index = "manifests" in doc
    has_manifest = "layers" in doc or "config" in doc
    if has_index and has_manifest:
        raise ConfigError("%s: ambiguous: has both manifests and layers/config" % name)
    if has_index:
        return "index"
    if "layers" in doc and "config" in doc:
        return "manifest"
    raise ConfigError("%s: neither an image manifest (config + layers) nor an index (manifests)"
                      % name)


def _descriptor(obj, where):
    if not isinstance(obj, dict):
        raise ConfigError("%s: must be a descriptor object" % where)
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ConfigError("%s: mediaType must be a non-empty string" % where)
    problem = _digest.problem_of(digest)
    if problem:
        raise ConfigError("%s: digest %r: %s" % (where, digest, problem))
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ConfigError("%s: size must be a non-negative integer" % where)
    urls = obj.get("urls")
    if urls is not None and (not isinstance(urls, list)
                             or not all(isinstance(u, str) for u in urls)):
        raise ConfigError("%s: urls must be a list of strings" % where)
    platform = obj.get("platform")
    if platform is not None:
        if not isinstance(platform, dict):
            raise ConfigError("%s: platform must be an object" % where)
        fields = [platform.get(k, "") for k in ("os", "architecture", "variant")]
        if not all(isinstance(f, str) for f in fields):
            raise ConfigError("%s: platform os, architecture and variant must be strings" % where)
        platform = Platform(*fields)
    return Descriptor(media_type, digest, size, platform,
                      _annotations(obj.get("annotations"), where), urls)


def _annotations(obj, where):
    if obj is None:
        return {}
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise ConfigError("%s: annotations must map strings to strings" % where)
    return obj

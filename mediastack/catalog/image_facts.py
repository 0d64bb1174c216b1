"""What the program relies on about each image it runs, and the upstream file each fact was read from.

A fact here is about someone else's image: the user its process runs (and writes) as, what its entrypoint does
at start that needs capabilities, the binaries a health check can run, the arguments its own CMD holds that a
replacement command must keep, the paths it writes, any engine version it needs, and the variables through
which it reads a secret from a file instead of its environment. Each names the file,
repository and tag (or commit) it was read from. Where a fact could not be read upstream, `unverified` says
which and why; such a fact is the best the program has, not a checked one.

The program derives its choices from these (directory owner and mode, capabilities, the command line, the
health check) and tests/test_image_facts.py holds every choice against them.
"""

from __future__ import annotations

from dataclasses import dataclass

# The stack's own identity (identity.puid / identity.pgid): what linuxserver.io images drop to.
PUID = "PUID"

# What a Source can vouch for.
FACT_KINDS = ("tag", "user", "entrypoint", "binaries", "command", "writes", "engine", "secrets")


@dataclass(frozen=True)
class Source:
    """One upstream file, read at one tag or commit, and the facts it supports."""

    repo: str  # owner/name on GitHub
    path: str
    ref: str  # the tag or commit the file was read at
    facts: tuple[str, ...]  # which of FACT_KINDS it supports
    note: str = ""  # e.g. when the file was read at another commit than the pinned tag's


@dataclass(frozen=True)
class ImageFacts:
    image: str  # repository, as in the catalog
    tag: str  # the tag these facts are about
    # The uid:gid the image's process runs and writes as once started; PUID for the stack's identity.
    user: str
    starts_as_root: bool  # the entrypoint starts as root and drops to `user` itself
    entrypoint: str  # what it does at start that needs privileges
    caps: tuple[str, ...]  # the capabilities that start (and the app) need; every other one is dropped
    binaries: tuple[str, ...]  # absolute paths a health check may run
    writes: tuple[str, ...]  # container paths the process writes
    keep_args: tuple[str, ...] = ()  # a run of the image's CMD a replacement command must keep, in order
    engine: str = ""  # a Docker Engine / API version it needs
    # Mode of the host directories it writes (None: from identity.umask, for images that run as PUID).
    dir_mode: int | None = None
    # How it reads a secret from a file: (variable, form); "*" for any variable. The form is a pattern of {key}:
    # the variable naming the file ("{key}_FILE": its value is the file's path), or "{key}=<prefix>{path}" when
    # the variable itself takes the path behind a prefix (Unpackerr's "filepath:"), or "" when no variable names it
    # (the config file the stack generates names the path). A variable not listed has no file form in this image.
    file_env: tuple[tuple[str, str], ...] = ()
    sources: tuple[Source, ...] = ()
    unverified: tuple[str, ...] = ()  # "<fact>: <why it could not be read upstream>"

    @property
    def verified(self) -> bool:
        return not self.unverified

    def binary_names(self) -> frozenset[str]:
        return frozenset(b.rsplit("/", 1)[-1] for b in self.binaries) | frozenset(self.binaries)

    def file_form(self, key: str) -> str | None:
        """How the image reads `key`'s value from a file (the form of `file_env`, its {key} filled in; {path}
        stays), or None when it reads it only from its environment."""
        for variable, pattern in self.file_env:
            if variable in (key, "*"):
                return pattern.replace("{key}", key)
        return None

    def file_env_line(self, key: str, path: str) -> tuple[str, str] | None:
        """The (variable, value) that points the image at `key`'s file at `path`; None when the generated config
        names the file instead (or the image has no file form)."""
        form = self.file_form(key)
        if not form:
            return None
        if "=" in form:
            variable, value = form.split("=", 1)
            return variable, value.replace("{path}", path)
        return form, path

    def sources_for(self, fact: str) -> tuple[Source, ...]:
        return tuple(s for s in self.sources if fact in s.facts)


# -- linuxserver.io ---------------------------------------------------------------------------------------

LSIO_ALPINE_BASE = Source(
    "linuxserver/docker-baseimage-alpine",
    "Dockerfile",
    "3d5a8b06a66bdf923dd537912cde796ccf915532",
    ("binaries", "user"),
    "installs curl, bash, procps-ng; creates user abc (911); ENTRYPOINT /init (s6-overlay)",
)
LSIO_ADDUSER = Source(
    "linuxserver/docker-baseimage-alpine",
    "root/etc/s6-overlay/s6-rc.d/init-adduser/run",
    "3d5a8b06a66bdf923dd537912cde796ccf915532",
    ("user", "entrypoint"),
    "usermod/groupmod abc to PUID/PGID as root before the services start",
)
LSIO_UBUNTU_BASE = Source(
    "linuxserver/docker-baseimage-ubuntu",
    "Dockerfile",
    "noble@0a9f48ba5fc737c2b0caf2ddb6393821ced9ede7",
    ("binaries", "user"),
    "installs curl; creates user abc (911); ENTRYPOINT /init (s6-overlay)",
)
LSIO_TAGS = Source(
    "linuxserver/docker-jellyfin",
    "Jenkinsfile",
    "10.11.2ubu2404-ls7",
    ("tag",),
    "the release job pushes the bare upstream version (SEMVER) besides <version>-ls<N>",
)
LSIO_ENVFILE = Source(
    "linuxserver/docker-baseimage-alpine",
    "root/etc/s6-overlay/s6-rc.d/init-envfile/run",
    "1b98fd9bc7f28ee903720fc6e8f9f64ce7b7d9d0",
    ("secrets",),
    "as root before the services start: for every FILE__KEY naming a file, KEY is set to its content (newlines "
    "removed) in s6's container environment, which the app's service reads",
)
LSIO_FILE_ENV = (("*", "FILE__{key}"),)
# s6 starts as root, re-ids abc to PUID/PGID, chowns what the image owns (lsiown), then runs the app as abc.
S6_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID")
S6_ENTRYPOINT = "s6-overlay as root: re-ids user abc to PUID:PGID, chowns /config (lsiown), runs the app as abc"
_LSIO_UNREAD = "the app's own Dockerfile at this tag is not stored here; facts from the linuxserver base image"


def _lsio(name: str, tag: str, base: Source, *extra: Source, unverified: tuple[str, ...] = ()) -> ImageFacts:
    return ImageFacts(
        image=f"lscr.io/linuxserver/{name}",
        tag=tag,
        user=PUID,
        starts_as_root=True,
        entrypoint=S6_ENTRYPOINT,
        caps=S6_CAPS,
        binaries=("/bin/sh", "/usr/bin/curl"),
        writes=("/config",),
        file_env=LSIO_FILE_ENV,
        sources=(base, LSIO_ADDUSER, LSIO_TAGS, LSIO_ENVFILE, *extra),
        unverified=unverified or (f"binaries: {_LSIO_UNREAD}", f"tag: {_LSIO_UNREAD}; the tag scheme is the same"),
    )


# -- the facts, by image repository ------------------------------------------------------------------------

_JELLYFIN = "linuxserver/docker-jellyfin"
_EXPORTARR = "onedr0p/exportarr"
_FLARESOLVERR = "FlareSolverr/FlareSolverr"
_UNPACKERR = "Unpackerr/unpackerr"
_IMMICH_PG = "immich-app/base-images"
_PG = "docker-library/postgres"
_OFFICIAL = "docker-library/official-images"
_RECYCLARR = "recyclarr/recyclarr"

IMAGE_FACTS: dict[str, ImageFacts] = {
    f.image: f
    for f in (
        ImageFacts(
            image="lscr.io/linuxserver/socket-proxy",
            tag="3.2.3",
            user="0:0",
            starts_as_root=False,
            entrypoint="/docker-entrypoint.sh as root: mkdir /run/haproxy, writes /run/haproxy/haproxy.cfg, "
            "execs haproxy (no s6, no privilege drop)",
            caps=(),  # root throughout: binds 2375, writes its tmpfs /run; no chown, no user change
            binaries=("/bin/sh", "/usr/bin/wget"),
            writes=("/run",),
            sources=(
                Source(
                    "linuxserver/docker-socket-proxy",
                    "Dockerfile",
                    "3.2.3-r0-ls54",
                    ("tag", "user", "binaries"),
                    "FROM alpine:3.22 (busybox wget); curl is removed after the build; no USER",
                ),
                Source(
                    "linuxserver/docker-socket-proxy",
                    "root/docker-entrypoint.sh",
                    "3.2.3-r0-ls54",
                    ("entrypoint", "writes"),
                ),
            ),
        ),
        ImageFacts(
            image="traefik",
            tag="v3.6.25",
            user="0:0",
            starts_as_root=False,
            entrypoint="/entrypoint.sh: prefixes `traefik` to flag arguments; no privilege change",
            caps=("NET_BIND_SERVICE",),  # binds :80 and :443 as root with every other capability dropped
            binaries=("/usr/local/bin/traefik",),
            writes=("/letsencrypt",),
            engine="Docker API negotiation (v3.6.1 and later); v3.5 pins API 1.24, which Docker Engine 29 refuses",
            dir_mode=0o700,  # acme.json holds the account and certificate keys
            sources=(
                Source(_OFFICIAL, "library/traefik", "b5b1e5da4c", ("tag",), "Tags: v3.6.25 (Directory v3.6/alpine)"),
                Source(
                    "traefik/traefik-library-image",
                    "v3.6/alpine/Dockerfile",
                    "7d4e84ad8a5d88f6dc41c3c95b14f1c23d571159",
                    ("user", "binaries"),
                    "no USER; traefik in /usr/local/bin",
                ),
                Source(
                    "traefik/traefik",
                    "issues/12253",
                    "v3.6.0",
                    ("engine",),
                    "P0 bug: the Docker and Swarm providers send API 1.24, Engine 29 refuses (minimum 1.44); fixed "
                    "by pull requests 12255 and 12256",
                ),
                Source(
                    "traefik/traefik-library-image",
                    "v3.6/alpine/entrypoint.sh",
                    "7d4e84ad8a5d88f6dc41c3c95b14f1c23d571159",
                    ("entrypoint",),
                ),
            ),
            unverified=(
                "engine: the release notes naming v3.6.1 as the first fixed v3.6 were not read; the bug (v3.6.0 "
                "affected) and its fix pull requests are from traefik/traefik issue 12253",
            ),
        ),
        ImageFacts(
            image="lscr.io/linuxserver/jellyfin",
            tag="10.11.2",
            user=PUID,
            starts_as_root=True,
            entrypoint=S6_ENTRYPOINT + "; init-jellyfin-config mkdirs and lsiowns /config/{log,data,cache}, /transcode",
            caps=S6_CAPS,
            binaries=("/bin/sh", "/usr/bin/curl"),
            writes=("/config", "/transcode", "/cache"),
            sources=(
                Source(_JELLYFIN, "Dockerfile", "10.11.2ubu2404-ls7", ("user",), "FROM baseimage-ubuntu:noble"),
                LSIO_UBUNTU_BASE,
                LSIO_ADDUSER,
                LSIO_TAGS,
                Source(
                    _JELLYFIN,
                    "root/etc/s6-overlay/s6-rc.d/init-jellyfin-config/run",
                    "10.11.2ubu2404-ls7",
                    ("entrypoint", "writes"),
                ),
                Source(
                    _JELLYFIN,
                    "root/etc/s6-overlay/s6-rc.d/svc-jellyfin/run",
                    "10.11.2ubu2404-ls7",
                    ("user",),
                    "s6-setuidgid abc /usr/bin/jellyfin; JELLYFIN_CONFIG_DIR=/config (system.xml)",
                ),
                Source(
                    "jellyfin/jellyfin",
                    "Jellyfin.Server/Startup.cs",
                    "v10.11.2",
                    ("command",),
                    "/metrics is mapped only when ServerConfiguration.EnableMetrics (default false) is set",
                ),
            ),
        ),
        ImageFacts(
            image="docker.io/library/nginx",
            tag="1.29.3-alpine",
            user="0:0",
            starts_as_root=True,
            entrypoint="the master runs as root, creates the cache and temp paths and chowns them to the "
            "worker user nginx (101); workers run as nginx",
            caps=("CHOWN", "SETGID", "SETUID"),
            binaries=("/bin/sh", "/usr/bin/wget"),
            writes=("/var/cache/nginx", "/tmp", "/var/run"),
            dir_mode=0o755,  # root-owned: the master (no DAC_OVERRIDE) makes its cache directory in it
            sources=(
                Source(_OFFICIAL, "library/nginx", "ec58f10d77", ("tag",), "Tags: 1.29.3-alpine (mainline/alpine)"),
                Source(
                    "nginxinc/docker-nginx",
                    "mainline/alpine-slim/Dockerfile",
                    "b430bec",
                    ("user", "entrypoint", "binaries"),
                    "read at 1.27.4 (the newest stored); adduser -u 101 nginx, CMD nginx -g 'daemon off;', "
                    "busybox wget from alpine",
                ),
            ),
        ),
        ImageFacts(
            image="ghcr.io/seerr-team/seerr",
            tag="v3.1.0",
            user="1000:1000",
            starts_as_root=False,
            entrypoint="none: CMD npm start as USER node (1000); the image has no init process (init: true wanted)",
            caps=(),
            binaries=("/usr/local/bin/node", "/bin/sh", "/usr/bin/wget"),
            writes=("/app/config", "/tmp"),
            sources=(
                Source(
                    "seerr-team/seerr",
                    ".github/workflows/release.yml",
                    "v3.1.0",
                    ("tag",),
                    "ghcr.io/seerr-team/seerr, tag type=raw,value=${{github.ref_name}} (v3.1.0); amd64, arm64",
                ),
                Source(
                    "seerr-team/seerr",
                    "Dockerfile",
                    "v3.1.0",
                    ("user", "entrypoint", "binaries", "writes"),
                    "FROM node:22.22.0-alpine3.22; USER node:node; COPY --chown=node:node; CMD npm start; "
                    "config in /app/config (server/utils/appDataVolume.ts)",
                ),
                Source(
                    "nodejs/docker-node",
                    "22/alpine3.22/Dockerfile",
                    "0001669cfeee81ddd41a0a16be9321e8a1bf2354",
                    ("user", "binaries"),
                    "adduser -u 1000 node; /usr/local/bin/node; alpine's busybox wget",
                ),
            ),
            unverified=("writes: Next's .next/cache under /app may be written (ImageFader unoptimized: false)",),
        ),
        _lsio("sonarr", "4.0.15", LSIO_ALPINE_BASE),
        _lsio("radarr", "5.27.5", LSIO_ALPINE_BASE),
        _lsio("prowlarr", "2.1.5", LSIO_ALPINE_BASE),
        _lsio("bazarr", "1.5.3", LSIO_ALPINE_BASE),
        _lsio("qbittorrent", "5.1.2", LSIO_ALPINE_BASE),
        _lsio("sabnzbd", "4.5.3", LSIO_ALPINE_BASE),
        ImageFacts(
            image="qmcgaw/gluetun",
            tag="v3.40.0",
            user="0:0",
            starts_as_root=False,
            entrypoint="/gluetun-entrypoint as root sets up the tunnel and firewall (NET_ADMIN) and writes "
            "/gluetun/servers.json",
            caps=("NET_ADMIN",),
            binaries=("/gluetun-entrypoint", "/bin/sh", "/usr/bin/wget"),
            writes=("/gluetun",),
            dir_mode=0o700,
            file_env=tuple(
                (key, "{key}_SECRETFILE") for key in ("WIREGUARD_PRIVATE_KEY", "OPENVPN_USER", "OPENVPN_PASSWORD")
            ),
            sources=(
                Source(
                    "qmcgaw/gluetun",
                    "Dockerfile",
                    "v3.40.0",
                    ("tag", "user", "binaries", "entrypoint", "writes"),
                    "FROM alpine, no USER, apk add wget, mkdir /gluetun; HEALTHCHECK /gluetun-entrypoint healthcheck",
                ),
                Source(
                    "qmcgaw/gluetun",
                    "internal/configuration/sources/secrets/wireguard.go",
                    "4fac10b648b70762c4d715f58ef5a570f3e8ac90",
                    ("secrets",),
                    "WIREGUARD_PRIVATE_KEY_SECRETFILE (default /run/secrets/wireguard_private_key) names its file",
                ),
                Source(
                    "qmcgaw/gluetun",
                    "internal/configuration/sources/secrets/openvpn.go",
                    "062b6a276c6ab2bad6534341382d01e17234a470",
                    ("secrets",),
                    "OPENVPN_USER_SECRETFILE and OPENVPN_PASSWORD_SECRETFILE (defaults /run/secrets/openvpn_user, "
                    "openvpn_password); helpers.go reads the file as the running user (root)",
                ),
            ),
        ),
        ImageFacts(
            image="ghcr.io/immich-app/immich-server",
            tag="v2.2.3",
            user="0:0",
            starts_as_root=False,
            entrypoint="tini, then the start script as root; no privilege change",
            caps=(),
            binaries=("/usr/src/app/bin/immich-healthcheck", "/bin/bash", "/usr/bin/curl"),
            writes=("/data",),
            dir_mode=0o755,
            file_env=(("DB_PASSWORD", "{key}_FILE"),),
            sources=(
                Source(
                    "immich-app/immich",
                    "server/Dockerfile",
                    "02b6b0d267280d64f0ecea017f4d9aa57ed20aa4",
                    ("user", "entrypoint"),
                    "no USER; ENTRYPOINT tini; PATH includes /usr/src/app/bin",
                ),
                Source(
                    "immich-app/immich",
                    "server/bin/immich-healthcheck",
                    "3f7ae4dfc7afb7920dba94115766b5b82d600743",
                    ("binaries",),
                    "bash script: curl /api/server/ping, expects pong",
                ),
                Source(
                    "immich-app/immich",
                    "docs/docs/install/environment-variables.md",
                    "02454cb48e9aee23af9b1293e525bcec9bcf1344",
                    ("secrets",),
                    "Docker Secrets: DB_PASSWORD_FILE (and DB_USERNAME_FILE, DB_URL_FILE, REDIS_PASSWORD_FILE) name "
                    "the file holding the variable's value",
                ),
            ),
            unverified=(
                "tag: the v2.2.3 release is not stored here",
                "user: server/Dockerfile was read at an older commit (the only one stored), not at v2.2.3",
                "secrets: DB_PASSWORD_FILE is from Immich's documentation (a later commit), not from the v2.2.3 code",
            ),
        ),
        ImageFacts(
            image="ghcr.io/immich-app/immich-machine-learning",
            tag="v2.2.3",
            user="0:0",
            starts_as_root=False,
            entrypoint="python app as root; no privilege change",
            caps=(),
            binaries=("/usr/local/bin/python3",),
            writes=("/cache",),
            dir_mode=0o755,
            sources=(
                Source(
                    "immich-app/immich",
                    "machine-learning/Dockerfile",
                    "0368c9190c811356b39d233b09665ed69122f5e4",
                    ("user", "binaries"),
                    "python base image, no USER",
                ),
                Source(
                    "immich-app/immich",
                    "machine-learning/app/healthcheck.py",
                    "7ac9c1bb78c66478bcbb67ee9c93defe833b0017",
                    ("binaries",),
                ),
            ),
            unverified=(
                "tag: the v2.2.3 release is not stored here",
                "user: machine-learning/Dockerfile was read at an old commit, not at v2.2.3",
                "binaries: healthcheck.py's place in the v2.2.3 image (its WORKDIR) was not read",
            ),
        ),
        ImageFacts(
            image="ghcr.io/immich-app/postgres",
            tag="14-vectorchord0.4.3-pgvectors0.2.0",
            user="999:999",
            starts_as_root=True,
            entrypoint="immich-docker-entrypoint.sh copies postgresql.<ssd|hdd>.conf to /etc/postgresql, then "
            "docker-entrypoint.sh as root chmods PGDATA 0700, chowns it (find ! -user postgres) and "
            "/var/run/postgresql, and re-execs itself as postgres with gosu",
            caps=("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"),
            binaries=("/usr/lib/postgresql/14/bin/pg_isready", "/usr/local/bin/gosu", "/bin/sh", "/bin/bash"),
            writes=("/var/lib/postgresql/data", "/etc/postgresql", "/var/run/postgresql"),
            # The image's CMD is the only place its postgresql.conf (shared_preload_libraries = vchord.so,
            # vectors.so) is loaded; settings go after it as further -c options.
            keep_args=("postgres", "-c", "config_file=/etc/postgresql/postgresql.conf"),
            dir_mode=0o700,
            # file_env runs before and again after the drop to postgres: the file must be readable by 999.
            file_env=(("POSTGRES_PASSWORD", "{key}_FILE"),),
            sources=(
                Source(
                    _IMMICH_PG,
                    "postgres/Dockerfile",
                    "6794fa0",
                    ("command", "entrypoint"),
                    'CMD ["postgres", "-c", "config_file=/etc/postgresql/postgresql.conf"]; '
                    "ENTRYPOINT immich-docker-entrypoint.sh",
                ),
                Source(_IMMICH_PG, "postgres/postgresql.ssd.conf", "6794fa0", ("command",), "shared_preload_libraries"),
                Source(_IMMICH_PG, "postgres/immich-docker-entrypoint.sh", "6794fa0", ("entrypoint", "writes")),
                Source(
                    _IMMICH_PG,
                    ".github/workflows/build-postgres.yml",
                    "6794fa0",
                    ("tag",),
                    "tag <pg>-vectorchord<v>-pgvectors<v>; postgres/versions.yaml lists 14, 0.4.3, 0.2.0",
                ),
                Source(
                    _PG,
                    "14/bookworm/Dockerfile",
                    "6edb0a8c4def40c371514b34aef9037ec82d9110",
                    ("user", "binaries"),
                    "postgres uid/gid 999, gosu, PATH has /usr/lib/postgresql/14/bin; read at a later commit",
                ),
                Source(
                    _PG,
                    "14/bookworm/docker-entrypoint.sh",
                    "6edb0a8c4def40c371514b34aef9037ec82d9110",
                    ("entrypoint", "writes", "secrets"),
                    "docker_setup_env: file_env 'POSTGRES_PASSWORD' reads $POSTGRES_PASSWORD_FILE, as root and again "
                    "as postgres after the gosu re-exec",
                ),
            ),
        ),
        ImageFacts(
            image="docker.io/valkey/valkey",
            tag="8.1.8",
            user="999:999",
            starts_as_root=True,
            entrypoint="as root: chowns whatever in /data is not valkey's (find ! -user valkey -exec chown; set -e, "
            "so a failed chown stops the start), then setpriv --reuid/--regid to valkey",
            caps=("CHOWN", "SETGID", "SETUID"),
            binaries=("/usr/local/bin/valkey-cli", "/usr/local/bin/valkey-server"),
            writes=("/data",),
            # Its entrypoint runs `find . ! -user valkey -exec chown` in /data as root under `set -e`
            # (valkey-container docker-entrypoint.sh): root without DAC_READ_SEARCH must be able to list the
            # directory, or the start fails ("find: .: Permission denied", seen on the tests' engine).
            dir_mode=0o755,
            sources=(
                Source(
                    "valkey-io/valkey-container",
                    "versions.json",
                    "00a2b211887fd46775bba37c554167a19783cca4",
                    ("tag",),
                    "8.1 is 8.1.8 on debian trixie",
                ),
                Source(
                    "valkey-io/valkey-container",
                    "generate-stackbrew-library.sh",
                    "0586ccf82de64ef9723401ef7a5a99ccedbcc412",
                    ("tag",),
                    "the debian variant is tagged <version> and <version>-<suite>; there is no -bookworm 8.1.4",
                ),
                Source(
                    "valkey-io/valkey-container",
                    "8.1/debian/Dockerfile",
                    "00a2b211887fd46775bba37c554167a19783cca4",
                    ("user", "binaries", "writes"),
                    "useradd -u 999 valkey; valkey-cli in /usr/local/bin; WORKDIR /data; CMD valkey-server",
                ),
                Source(
                    "valkey-io/valkey-container",
                    "docker-entrypoint.sh",
                    "2a80026d51102f32b36b249542027cb11223a7f1",
                    ("entrypoint",),
                ),
            ),
        ),
        ImageFacts(
            image="ghcr.io/haveagitgat/tdarr",
            tag="2.45.01",
            user=PUID,
            starts_as_root=True,
            entrypoint="s6 /init as root: cont-init 01-setup-perms re-ids Tdarr to PUID:PGID and chowns $HOME, /temp, "
            "/logs and (first run) /app; services run as Tdarr (s6-setuidgid)",
            caps=S6_CAPS,
            binaries=("/bin/sh", "/usr/bin/curl", "/usr/bin/wget", "/usr/bin/grep"),
            writes=("/app/server", "/app/configs", "/temp", "/logs"),
            sources=(
                Source("HaveAGitGat/Tdarr", "docker/Dockerfile.base", "c9715e1", ("binaries",), "apt curl, wget"),
                Source("HaveAGitGat/Tdarr", "docker/Dockerfile.final", "c9715e1", ("entrypoint",), "ENTRYPOINT /init"),
                Source(
                    "HaveAGitGat/Tdarr",
                    "docker/root/etc/cont-init.d/01-setup-perms",
                    "c9715e1",
                    ("user", "entrypoint", "writes"),
                ),
                Source("HaveAGitGat/Tdarr", "docker/root/etc/services.d/tdarr_server/run", "c9715e1", ("user",)),
            ),
            unverified=(
                "tag: Tdarr's images are built outside the repository; 2.45.01 could not be checked",
                "binaries: grep and sh come with the Ubuntu base (lsiobase/ubuntu:jammy), not read here",
            ),
        ),
        ImageFacts(
            image="ghcr.io/haveagitgat/tdarr_node",
            tag="2.45.01",
            user=PUID,
            starts_as_root=True,
            entrypoint="s6 /init as root: cont-init 01-setup-perms re-ids Tdarr to PUID:PGID and chowns $HOME, /temp, "
            "/logs and (first run) /app; the node runs as Tdarr (exec s6-setuidgid Tdarr ./Tdarr_Node)",
            caps=S6_CAPS,
            binaries=("/bin/sh", "/usr/bin/curl", "/usr/bin/wget", "/usr/bin/grep"),
            writes=("/app/configs", "/temp", "/logs"),
            sources=(
                Source("HaveAGitGat/Tdarr", "docker/Dockerfile.base", "c9715e1", ("binaries",), "apt curl, wget"),
                Source(
                    "HaveAGitGat/Tdarr",
                    "docker/root/etc/services.d/tdarr_node/run",
                    "c9715e1",
                    ("user", "entrypoint"),
                    "the process is ./Tdarr_Node: its name (/proc/<pid>/comm) is Tdarr_Node",
                ),
                Source(
                    "HaveAGitGat/Tdarr",
                    "docker/root/etc/cont-init.d/01-setup-perms",
                    "c9715e1",
                    ("user", "entrypoint", "writes"),
                ),
            ),
            unverified=(
                "tag: Tdarr's images are built outside the repository; 2.45.01 could not be checked",
                "binaries: grep and sh come with the Ubuntu base (lsiobase/ubuntu:jammy); procps (pgrep) is not "
                "installed by any Dockerfile read here",
            ),
        ),
        ImageFacts(
            image="docker.io/library/redis",
            tag="8.2.2-bookworm",
            user="999:999",
            starts_as_root=True,
            entrypoint="as root with SETUID and SETGID: fixes the owner of /data's *.rdb files (chown; a failure "
            "only warns), then setpriv --reuid redis --regid redis",
            caps=("SETGID", "SETUID"),
            binaries=("/usr/local/bin/redis-cli", "/usr/local/bin/redis-server"),
            writes=(),  # no persistence (--save "" --appendonly no); /data is a tmpfs
            sources=(
                Source(
                    _OFFICIAL,
                    "library/redis",
                    "157b4dd8e6",
                    ("tag",),
                    "Tags: 8.2.2-bookworm (redis/docker-library-redis, GitCommit c5846c13, Directory debian)",
                ),
                Source(
                    "redis/docker-library-redis",
                    "debian/Dockerfile",
                    "0076c90a8028d29b25313f7272fa2d1245c3be76",
                    ("user", "binaries"),
                    "read at a later commit (8.6.4): redis uid 999, CMD redis-server",
                ),
                Source(
                    "redis/docker-library-redis",
                    "debian/docker-entrypoint.sh",
                    "0d55be9aa67b917c2a45cadabf07518f356443b0",
                    ("entrypoint",),
                    "read at a later commit than v8.2.2",
                ),
            ),
        ),
        ImageFacts(
            image="prom/prometheus",
            tag="v3.7.3",
            user="65534:65534",
            starts_as_root=False,
            entrypoint="none: /bin/prometheus runs as nobody",
            caps=(),
            binaries=("/bin/wget", "/bin/sh", "/bin/prometheus", "/bin/promtool"),
            writes=("/prometheus",),
            sources=(
                Source(
                    "prometheus/prometheus",
                    "Dockerfile",
                    "v3.7.3",
                    ("tag", "user", "binaries", "writes"),
                    "FROM quay.io/prometheus/busybox (wget); USER nobody; chown nobody /prometheus",
                ),
            ),
        ),
        ImageFacts(
            image="prom/alertmanager",
            tag="v0.28.1",
            user="65534:65534",
            starts_as_root=False,
            entrypoint="none: /bin/alertmanager runs as nobody",
            caps=(),
            binaries=("/bin/wget", "/bin/sh", "/bin/alertmanager", "/bin/amtool"),
            writes=("/alertmanager",),
            sources=(
                Source(
                    "prometheus/alertmanager",
                    "Dockerfile",
                    "v0.28.1",
                    ("tag", "user", "binaries", "writes"),
                    "FROM quay.io/prometheus/busybox (wget); USER nobody",
                ),
            ),
        ),
        ImageFacts(
            image="grafana/grafana",
            tag="12.2.1",
            user="472:0",
            starts_as_root=False,
            entrypoint="none: grafana runs as 472",
            caps=(),
            binaries=("/bin/sh", "/usr/bin/wget"),
            writes=("/var/lib/grafana",),
            file_env=(("*", "{key}__FILE"),),
            sources=(
                Source(
                    "grafana/grafana",
                    "packaging/docker/run.sh",
                    "07754534fbafa7e7e18e7272e552c166f1afae28",
                    ("secrets",),
                    "every GF_*__FILE variable: the variable without __FILE is exported with the file's content, as "
                    "the container's user (472), before grafana starts",
                ),
                Source(
                    "grafana/grafana",
                    "Dockerfile",
                    "0014fb6402029aa07f258cb103e8f52c705ad4e8",
                    ("user",),
                    "ARG GF_UID=472 (an old Dockerfile: the only grafana/grafana one stored)",
                ),
            ),
            unverified=(
                "tag: the 12.2.1 Dockerfile is not stored here",
                "user: GF_UID 472 / GF_GID 0 read from other versions of the Dockerfile, not 12.2.1's",
                "binaries: the Alpine base (busybox wget) of the 12.2.1 image was not read",
                "secrets: run.sh was read at a later commit than 12.2.1's",
            ),
        ),
        ImageFacts(
            image="prom/blackbox-exporter",
            tag="v0.27.0",
            user="0:0",
            starts_as_root=False,
            entrypoint="none",
            caps=(),
            binaries=("/bin/wget", "/bin/sh", "/bin/blackbox_exporter"),
            writes=(),
            sources=(
                Source(
                    "prometheus/blackbox_exporter",
                    "Dockerfile",
                    "v0.27.0",
                    ("tag", "user", "binaries"),
                    "FROM quay.io/prometheus/busybox (wget); no USER at this tag (runs as any user: writes nothing)",
                ),
            ),
        ),
        ImageFacts(
            image="prom/node-exporter",
            tag="v1.10.2",
            user="65534:65534",
            starts_as_root=False,
            entrypoint="none",
            caps=(),
            binaries=("/bin/wget", "/bin/sh", "/bin/node_exporter"),
            writes=(),
            engine="the host's network and PID namespaces and / at /host (--path.rootfs=/host), as upstream runs it",
            sources=(
                Source(
                    "prometheus/node_exporter",
                    "Dockerfile",
                    "v1.10.2",
                    ("tag", "user", "binaries"),
                    "FROM quay.io/prometheus/busybox; USER nobody",
                ),
                Source(
                    "prometheus/node_exporter",
                    "README.md",
                    "v1.10.2",
                    ("engine",),
                    'docker run --net="host" --pid="host" -v "/:/host:ro,rslave" ... --path.rootfs=/host; the stack '
                    "takes the network namespace only",
                ),
                Source(
                    "prometheus/node_exporter",
                    "go.mod",
                    "v1.10.2",
                    ("command",),
                    "exporter-toolkit v0.14.1: --web.listen-address is repeatable",
                ),
                Source(
                    "moby/moby",
                    "commit c761353 (pull request 47481)",
                    "v25.0 backport",
                    ("engine",),
                    "an internal bridge keeps an address on the host, reachable from its containers; read as the "
                    "commit's description only",
                ),
            ),
        ),
        ImageFacts(
            image="ghcr.io/google/cadvisor",
            tag="v0.54.1",
            user="0:0",
            starts_as_root=False,
            entrypoint="none: /usr/bin/cadvisor -logtostderr",
            caps=(),
            binaries=("/usr/bin/wget", "/bin/sh", "/usr/bin/cadvisor"),
            writes=(),
            engine="v0.54 or later on a Docker host using the containerd image store (containerd-snapshotter "
            "support); images from v0.53.0 on are published at ghcr.io/google/cadvisor",
            sources=(
                Source(
                    "google/cadvisor",
                    "deploy/Dockerfile",
                    "v0.54.1",
                    ("tag", "user", "binaries"),
                    "FROM alpine; no USER; HEALTHCHECK wget --spider http://localhost:8080/healthz",
                ),
                Source(
                    "google/cadvisor",
                    "README.md",
                    "v0.54.1",
                    ("tag",),
                    "ghcr.io/google/cadvisor:$VERSION; gcr.io/cadvisor/cadvisor only before v0.53.0",
                ),
                Source(
                    "google/cadvisor",
                    "container/containerd (commit 7eda1904)",
                    "v0.54.0",
                    ("engine",),
                    "fix(3643) add containerd-snapshotter support",
                ),
            ),
        ),
        ImageFacts(
            image="ghcr.io/onedr0p/exportarr",
            tag="v2.0.1",
            user="65532:65532",
            starts_as_root=False,
            entrypoint="none: /tini -- /exportarr",
            caps=(),
            # Distroless: no shell, no HTTP client; nothing a health check could run.
            binaries=("/exportarr", "/tini"),
            writes=(),
            keep_args=(),
            file_env=(("APIKEY", "{key}_FILE"),),
            sources=(
                Source(
                    _EXPORTARR,
                    "Dockerfile",
                    "v2.0.1",
                    ("tag", "user", "binaries"),
                    "FROM gcr.io/distroless/static:nonroot; USER nonroot (65532)",
                ),
                Source(
                    _EXPORTARR,
                    "internal/commands/root.go",
                    "v2.0.1",
                    ("binaries",),
                    "/healthz answers 200 (for a probe from outside the container)",
                ),
                Source(
                    _EXPORTARR,
                    "internal/commands/arr.go",
                    "v2.0.1",
                    ("command",),
                    "prowlarr mode: prowlarr, history, system-status, system-health collectors; no queue collector",
                ),
                Source(
                    _EXPORTARR,
                    "internal/config/config.go",
                    "0cb318682ee0733e460aae27b6acdb0aa1045162",
                    ("secrets",),
                    "APIKEY_FILE becomes api-key-file (the environment's backwards-compatibility transform); its file "
                    "is read whole, not trimmed, as the api-key. Read at a later commit than v2.0.1",
                ),
            ),
        ),
        ImageFacts(
            image="ghcr.io/flaresolverr/flaresolverr",
            tag="v3.5.0",
            user="1000:1000",
            starts_as_root=False,
            entrypoint="none: /usr/bin/dumb-init -- python -u /app/flaresolverr.py as user flaresolverr",
            caps=(),
            binaries=("/usr/bin/curl", "/usr/local/bin/python", "/usr/bin/dumb-init"),
            writes=("/tmp", "/app/.local", "/app/.config"),
            sources=(
                Source(
                    _FLARESOLVERR,
                    "Dockerfile",
                    "v3.5.0",
                    ("user", "entrypoint", "binaries"),
                    "FROM python:3.11-slim-bookworm; apt chromium, curl, dumb-init, procps; useradd flaresolverr; "
                    "USER flaresolverr; ENTRYPOINT dumb-init",
                ),
                Source(
                    _FLARESOLVERR,
                    ".github/workflows/release-docker.yml",
                    "v3.5.0",
                    ("tag",),
                    "ghcr.io/flaresolverr/flaresolverr, tags v{{version}}",
                ),
                Source(
                    _FLARESOLVERR,
                    "src/undetected_chromedriver/patcher.py",
                    "v3.5.0",
                    ("writes",),
                    "the patched driver under ~/.local/share (/app); Chromium profiles in /tmp",
                ),
            ),
            unverified=(
                "user: useradd without -u on Debian; 1000 is Debian's UID_MIN, not stated upstream",
                "tag: no registry was queried; the tag form comes from the release workflow",
            ),
        ),
        ImageFacts(
            image="ghcr.io/unpackerr/unpackerr",
            tag="v0.15.2",
            user="0:0",
            starts_as_root=False,
            entrypoint="none: /unpackerr (no chown, no privilege drop); the stack runs it as its identity",
            caps=(),
            binaries=("/unpackerr", "/bin/sh", "/usr/bin/wget"),
            writes=(),
            # The variable itself takes the path: UN_SONARR_0_API_KEY=filepath:/run/secrets/sonarr-api-key.
            file_env=(("*", "{key}=filepath:{path}"),),
            sources=(
                Source(
                    _UNPACKERR,
                    "pkg/unpackerr/start.go",
                    "v0.15.2",
                    ("secrets",),
                    'after the config file and the UN_ variables, cnfgfile.Parse(config, Opts{Prefix: "filepath:"}) '
                    "replaces every string field whose value starts `filepath:` with that file's text",
                ),
                Source(
                    "golift/cnfgfile",
                    "filepath.go",
                    "a5436d84eb48 (unpackerr v0.15.2's go.mod)",
                    ("secrets",),
                    "the path after the prefix is trimmed; the file's first 1024 bytes are read and TrimSpace'd",
                ),
                Source(
                    _UNPACKERR,
                    "init/docker/Dockerfile",
                    "v0.15.2",
                    ("user", "entrypoint", "binaries"),
                    "FROM alpine; apk openssl tzdata; ENTRYPOINT /unpackerr; no USER",
                ),
                Source(
                    _UNPACKERR,
                    ".github/workflows/release.yml",
                    "v0.15.2",
                    ("tag",),
                    "ghcr.io/unpackerr/unpackerr, semver tags v0.15.2",
                ),
                Source(
                    _UNPACKERR,
                    "pkg/unpackerr/cnfgfile.go",
                    "v0.15.2",
                    ("writes",),
                    "no config file is created on Linux, no default log file; extracts beside the archive",
                ),
            ),
            unverified=(
                "binaries: busybox wget/sh come from the unpinned alpine base, not read upstream",
                "tag: no registry was queried; the tag form comes from the release workflow",
            ),
        ),
        ImageFacts(
            image="mediastack/media-exporter",
            tag="0.1.0",
            user="65534:65534",
            starts_as_root=False,
            entrypoint="none: python3 -u media_exporter.py",
            caps=(),
            binaries=("/usr/local/bin/python3",),
            writes=(),
            file_env=(("JELLYFIN_API_KEY", "{key}_FILE"),),
            sources=(
                Source(
                    "mediastack/mediastack",
                    "images/media-exporter/Dockerfile",
                    "this repository",
                    ("user", "binaries", "tag"),
                    "this project's own image: FROM python:3.11-slim-bookworm; USER 65534:65534; "
                    "healthcheck.py in WORKDIR /app",
                ),
                Source(
                    "mediastack/mediastack",
                    "images/media-exporter/media_exporter.py",
                    "this repository",
                    ("secrets",),
                    "JELLYFIN_API_KEY_FILE names a file holding the key (surrounding whitespace stripped)",
                ),
            ),
        ),
        ImageFacts(
            image="quay.io/prometheuscommunity/postgres-exporter",
            tag="v0.18.1",
            user="65534:65534",
            starts_as_root=False,
            entrypoint="none",
            caps=(),
            binaries=("/bin/wget", "/bin/sh", "/bin/postgres_exporter"),
            writes=(),
            file_env=(("DATA_SOURCE_PASS", "{key}_FILE"),),
            sources=(
                Source(
                    "prometheus-community/postgres_exporter",
                    "Dockerfile",
                    "v0.18.1",
                    ("tag", "user", "binaries"),
                    "FROM quay.io/prometheus/busybox; USER nobody",
                ),
                Source(
                    "prometheus-community/postgres_exporter",
                    "cmd/postgres_exporter/datasource.go",
                    "1b1eb48d551bd7a53fecadc1c81f7e3359e32927",
                    ("secrets",),
                    "getDataSources: DATA_SOURCE_PASS_FILE wins over DATA_SOURCE_PASS (read, then whitespace trimmed); "
                    "read at a later commit than v0.18.1",
                ),
            ),
        ),
        ImageFacts(
            image="docker.io/oliver006/redis_exporter",
            tag="v1.80.0-alpine",
            user="59000:59000",
            starts_as_root=False,
            entrypoint="none",
            caps=(),
            binaries=("/bin/wget", "/bin/sh", "/redis_exporter"),
            writes=(),
            sources=(
                Source(
                    "oliver006/redis_exporter",
                    "Dockerfile",
                    "v1.80.0",
                    ("user", "binaries"),
                    "target alpine: FROM alpine:3.22 (busybox wget); USER 59000:59000",
                ),
                Source(
                    "oliver006/redis_exporter",
                    ".github/workflows/release.yml",
                    "v1.80.0",
                    ("tag",),
                    "pushes <tag>-alpine from the alpine target",
                ),
                Source(
                    "oliver006/redis_exporter",
                    "README.md",
                    "v1.80.0",
                    ("command",),
                    "one address per exporter; several Redis: --redis.addr= and Prometheus on /scrape?target=",
                ),
                Source(
                    "oliver006/redis_exporter",
                    "exporter/exporter.go",
                    "v1.80.0",
                    ("binaries",),
                    "/health and /scrape handlers",
                ),
            ),
        ),
        ImageFacts(
            image="ghcr.io/gethomepage/homepage",
            tag="v1.12.3",
            user=PUID,
            starts_as_root=True,
            entrypoint="docker-entrypoint.sh as root: chowns /app/config and /app/.next to PUID:PGID when their owner "
            "differs (failing softly), then su-exec PUID:PGID node server.js; PUID/PGID default to 0 (root)",
            caps=("CHOWN", "SETGID", "SETUID"),  # chown, then su-exec's setgid/setuid
            binaries=("/bin/sh", "/usr/bin/wget", "/usr/local/bin/node"),
            # Next.js' incremental static regeneration of / writes under .next (src/pages/index.jsx, api/revalidate)
            writes=("/app/.next",),
            sources=(
                Source(
                    "gethomepage/homepage",
                    ".github/workflows/docker-publish.yml",
                    "v1.12.3",
                    ("tag",),
                    "pushes ghcr.io/gethomepage/homepage with type=semver,pattern=v{{version}} (l.17, 39-50)",
                ),
                Source(
                    "gethomepage/homepage",
                    "Dockerfile",
                    "v1.12.3",
                    ("user", "binaries", "writes"),
                    "runner FROM node:22-alpine (busybox wget), USER root, app files --chown=1000:1000, "
                    "HEALTHCHECK wget http://127.0.0.1:$PORT/api/healthcheck, PORT=3000",
                ),
                Source(
                    "gethomepage/homepage",
                    "docker-entrypoint.sh",
                    "v1.12.3",
                    ("user", "entrypoint"),
                    "PUID/PGID default 0; chown -R /app/config and /app/.next if owned otherwise; exec su-exec",
                ),
                Source(
                    "nodejs/docker-node",
                    "22/alpine3.22/Dockerfile",
                    "0001669cfeee81ddd41a0a16be9321e8a1bf2354",
                    ("binaries",),
                    "node at /usr/local/bin/node on Alpine",
                ),
            ),
            unverified=(
                "writes: that .next must stay writable is read from the code (getStaticProps, res.revalidate), "
                "not observed in a running container",
            ),
        ),
        ImageFacts(
            image="ghcr.io/recyclarr/recyclarr",
            tag="8.7.1",
            user="1000:1000",
            starts_as_root=False,
            entrypoint="tini, then /entrypoint.sh as 1000:1000: with no arguments it writes `$CRON_SCHEDULE /cron.sh` "
            "to /tmp/crontab and execs supercronic, which runs `recyclarr sync` on that schedule (none at start); "
            "no privilege change",
            caps=(),
            binaries=("/sbin/tini", "/bin/bash", "/usr/bin/supercronic", "/app/recyclarr/recyclarr"),
            # /config: recyclarr.yml and configs/ (read), state/ (its ids of what it made in each app), logs/cli/,
            # resources/ (git clones of the guides); /tmp: the crontab.
            writes=("/config", "/tmp"),
            dir_mode=0o750,
            # No variable: recyclarr.yml names the file (`api_key: !file /run/secrets/<id>`).
            file_env=(("*", ""),),
            sources=(
                Source(
                    _RECYCLARR,
                    "src/Recyclarr.Core/Config/File/FileDeserializer.cs",
                    "v8.7.1",
                    ("secrets",),
                    "a `!file <path>` scalar is the file's whole text, trimmed; an absolute path is used as is",
                ),
                Source(
                    _RECYCLARR,
                    "Dockerfile",
                    "v8.7.1",
                    ("user", "binaries", "entrypoint"),
                    "FROM dotnet/runtime:10.0-alpine; apk add bash tzdata supercronic git tini; USER 1000:1000; "
                    "ENV CRON_SCHEDULE=@daily RECYCLARR_CONFIG_DIR=/config; ENTRYPOINT /sbin/tini -- /entrypoint.sh",
                ),
                Source(_RECYCLARR, "docker/scripts/entrypoint.sh", "v8.7.1", ("entrypoint", "writes")),
                Source(_RECYCLARR, "docker/scripts/cron.sh", "v8.7.1", ("command",), "recyclarr sync --log"),
                Source(
                    _RECYCLARR,
                    ".github/workflows/reusable-docker.yml",
                    "v8.7.1",
                    ("tag",),
                    "docker.io/recyclarr/recyclarr and ghcr.io/recyclarr/recyclarr; tags {{version}}, "
                    "{{major}}.{{minor}}, {{major}}; flavor latest=false (there is no `latest`)",
                ),
                Source(
                    _RECYCLARR,
                    "src/Recyclarr.Core/Platform/AppPaths.cs",
                    "v8.7.1",
                    ("writes",),
                    "state/, logs/cli/, resources/, configs/ and includes/ under the config directory",
                ),
                Source(
                    _RECYCLARR,
                    "docker-compose.yml",
                    "v8.7.1",
                    ("writes",),
                    "upstream runs it read_only with a tmpfs /tmp, as any user (user: ${DOCKER_UID}:${DOCKER_GID})",
                ),
                Source(
                    _RECYCLARR,
                    "src/Recyclarr.Cli/Logging/FileLogSinkConfigurator.cs",
                    "v8.7.1",
                    ("binaries",),
                    "each run logs to logs/cli/recyclarr_<yyyy-MM-dd_HH-mm-ss>.debug.log, lines `[HH:mm:ss LVL] ...` "
                    "(Serilog u3 levels: ERR, FTL for failures): what its health check reads",
                ),
            ),
            unverified=(
                "binaries: /bin/bash and /usr/bin/supercronic are where Alpine's packages put them (APKBUILDs not "
                "read); the health check runs `bash` through PATH",
                "tag: the registry was not queried; 8.7.1 is the release tag and the workflow's {{version}} pattern",
            ),
        ),
    )
}

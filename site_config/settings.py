"""Settings, driven by the environment (the table is in README.md, "Settings").

Nothing set is the embedded default: SQLite (WAL) and the in-memory channel layer in
one process. DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis so that any
number of Daphne processes share the same rooms.
"""

import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import dj_database_url
import environs
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured
from marshmallow.validate import Range

BASE_DIR = Path(__file__).resolve().parent.parent

# Values are taken literally (no $VAR expansion: a "$" in a secret is a "$"), and no .env
# file is read: the process environment is the whole configuration.
env = environs.Env(expand_vars=False)
# Every variable read below, for the test that keeps conftest.py's isolation list complete.
variables_read: list[str] = []

Value = TypeVar("Value")
at_least_zero = Range(min=0)
positive = Range(min=0, min_inclusive=False)


def setting(read: Callable[..., Value | None], name: str, default: Value, **checks: Any) -> Value:
    """`read(name)` with environs's strict parser (`env.bool`, `env.int`, ...), or `default`
    when the variable is unset or empty.

    Strict, because a typo must not pass for a choice: "treu" is not false, "ten" is not a
    number. A value that does not parse (or fails `validate=`) stops start-up, naming the
    variable, its value and what is wrong with it.
    """
    variables_read.append(name)
    if not os.environ.get(name):
        return default
    try:
        value = read(name, **checks)
    except environs.EnvValidationError as error:
        problems = error.error_messages
        reason = " ".join(problems) if isinstance(problems, list) else str(problems)
        raise ImproperlyConfigured(f"{name}={os.environ[name]!r} is invalid: {reason}") from None
    assert value is not None  # set and valid
    return value


def comma_separated(name: str, default: list[str]) -> list[str]:
    """A comma-separated list (blanks around and between items ignored)."""
    return [item.strip() for item in setting(env.list, name, default) if item.strip()]


DEBUG = setting(env.bool, "DEBUG", False)

SECRET_KEY = setting(env.str, "SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in production, or DEBUG=true for local "
            "development (make run does)."
        )
    SECRET_KEY = "insecure-development-key-never-use-in-production"

ALLOWED_HOSTS = comma_separated("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = comma_separated("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves ASGI (HTTP and WebSockets)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",  # its {% htmx_script %} tag
    "csp",  # its system checks of CONTENT_SECURITY_POLICY
    "template_partials",
    "axes",  # log-in throttling (Accounts, below)
    "accounts",
    "realtime",  # the transport: hub, sockets, watchdog, Daphne patches (realtime/README.md)
    "rooms",
]

# Every entry can run on the event loop (site_config/tests/test_middleware.py): under Daphne
# one that cannot sends each request through a thread and back around it.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "site_config.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",  # CONTENT_SECURITY_POLICY, below
    "site_config.middleware.PrivatePagesMiddleware",
    # Last, as django-axes asks: turns a refused log-in into our 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "site_config.urls"
ASGI_APPLICATION = "site_config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite is the embedded default. WAL lets readers run beside the one writer,
# IMMEDIATE transactions take the write lock up front (no deadlocking upgrade from a
# read lock), and the timeout makes a busy writer wait instead of failing with
# "database is locked".
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=setting(env.int, "CONN_MAX_AGE", 60, validate=at_least_zero),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Connections are kept for CONN_MAX_AGE here too. With 0, channels closed the
    # connection after every database_sync_to_async call, and closing the last
    # connection to a WAL database checkpoints it: each message and each socket
    # connect paid a reopen and a checkpoint (measured: README "Performance").
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
# PostgreSQL: connections from psycopg's pool, per process. Under ASGI each request runs its
# sync code in a thread of its own, and connections are per thread: kept for CONN_MAX_AGE,
# every such thread left one open behind it, which is why Django's docs advise against
# persistent connections under ASGI. From the pool, a connection is taken for a request
# (or a consumer's database call) and given back at its end; Django requires
# CONN_MAX_AGE=0 with it. A request that finds all DATABASE_POOL_MAX_SIZE connections in
# use waits up to DATABASE_POOL_TIMEOUT seconds for one, then fails.
DATABASE_POOL_MIN_SIZE = setting(env.int, "DATABASE_POOL_MIN_SIZE", 2, validate=at_least_zero)
DATABASE_POOL_MAX_SIZE = setting(env.int, "DATABASE_POOL_MAX_SIZE", 10, validate=positive)
DATABASE_POOL_TIMEOUT = setting(env.float, "DATABASE_POOL_TIMEOUT", 10.0, validate=positive)
if DATABASE_POOL_MAX_SIZE < DATABASE_POOL_MIN_SIZE:
    raise ImproperlyConfigured(
        f"DATABASE_POOL_MAX_SIZE={DATABASE_POOL_MAX_SIZE} is less than "
        f"DATABASE_POOL_MIN_SIZE={DATABASE_POOL_MIN_SIZE}."
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DATABASE_POOL_MIN_SIZE,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT,
    }

REDIS_URL = setting(env.str, "REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The pub/sub layer publishes a group message once per group, and each
            # process fans out locally: cheaper than the core layer's one list push
            # per member for big rooms (measured: README "Performance").
            "BACKEND": "realtime.layers.HubRedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    # Thumbnails are jobs for `manage.py runworker --layer thumbnails thumbnails`: the
    # core layer keeps a job in a Redis list until one worker takes it. (On the pub/sub
    # layer a job sent while no worker is subscribed is dropped, and each of several
    # workers would get every job.)
    CHANNEL_LAYERS["thumbnails"] = {
        "BACKEND": "realtime.layers.JobsRedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "expiry": 3600, "capacity": 10_000},
    }
else:
    # Channels' in-memory layer, with room for every event of the process's one channel
    # and a dropped message counted as an outage (realtime/layers.py).
    CHANNEL_LAYERS = {"default": {"BACKEND": "realtime.layers.HubInMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "rooms:list"
LOGOUT_REDIRECT_URL = "login"
# django-axes first: it refuses a locked-out log-in before ModelBackend hashes anything.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = setting(env.path, "STATIC_ROOT", BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Uploaded files (attachments: rooms/attachments.py) live in the default storage. Never
# served from MEDIA_URL: no route exposes MEDIA_ROOT, every file goes out through the
# access-checked view (rooms/attachment_views.py), or a proxy's internal location it
# names (CHAT_ATTACHMENT_ACCEL_REDIRECT), or, on S3, a presigned URL it redirects to.
MEDIA_ROOT = setting(env.path, "MEDIA_ROOT", BASE_DIR / "media")
MEDIA_URL = "/media-is-not-served/"
# An S3-compatible store instead (django-storages): bucket, endpoint (for one that is
# not AWS: MinIO, R2, ...) and region; credentials from boto3's usual chain
# (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a role). Objects are private (no ACL, the
# bucket's policy) and reached only through presigned URLs that expire quickly.
STORAGE_S3_BUCKET = setting(env.str, "STORAGE_S3_BUCKET", "")
STORAGE_S3_ENDPOINT_URL = setting(env.str, "STORAGE_S3_ENDPOINT_URL", "")
STORAGE_S3_REGION = setting(env.str, "STORAGE_S3_REGION", "")
STORAGE_S3_URL_EXPIRES = setting(env.int, "STORAGE_S3_URL_EXPIRES", 300, validate=positive)
DEFAULT_STORAGE: dict[str, Any] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": MEDIA_ROOT, "base_url": MEDIA_URL},
}
if STORAGE_S3_BUCKET:
    DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": STORAGE_S3_BUCKET,
            "endpoint_url": STORAGE_S3_ENDPOINT_URL or None,
            "region_name": STORAGE_S3_REGION or None,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": STORAGE_S3_URL_EXPIRES,
            "file_overwrite": False,
        },
    }
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Production hardening; `manage.py check --deploy` is clean with DEBUG off.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = setting(env.bool, "SECURE_COOKIES", not DEBUG)
SECURE_SSL_REDIRECT = setting(env.bool, "SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers and orchestrators probe each instance over plain HTTP: a 301 to https
# would read as "unhealthy" (e2e/test_production.py).
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = setting(
    env.int, "SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, validate=at_least_zero
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = setting(env.bool, "SECURE_HSTS_PRELOAD", False)
# Preloading is a one-way commitment for the whole domain, so an operator opts in with
# SECURE_HSTS_PRELOAD=true; until then the deploy check's reminder is silenced.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
BEHIND_PROXY = setting(env.bool, "BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

# Request bodies (site_config/http_guard.py): one over this many bytes is answered 413
# before it is read, by Daphne's protocol and by the ASGI guard in front of Django. Django's
# own limit on form data agrees; a proxy in front should refuse at the same size (README).
CHAT_MAX_REQUEST_BYTES = setting(
    env.int, "CHAT_MAX_REQUEST_BYTES", 2 * 1024 * 1024, validate=at_least_zero
)
DATA_UPLOAD_MAX_MEMORY_SIZE = CHAT_MAX_REQUEST_BYTES
# Attachments (rooms/attachments.py): a file's size at most, and how many one user may
# send a minute. The composer's URL (and only it) takes bodies up to the size plus
# CHAT_ATTACHMENT_FORM_OVERHEAD for the form's other fields (http_guard.limit_for).
# Files over FILE_UPLOAD_MAX_MEMORY_SIZE go to a temporary file while read, not memory.
CHAT_ATTACHMENT_MAX_BYTES = setting(
    env.int, "CHAT_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024, validate=positive
)
CHAT_ATTACHMENT_FORM_OVERHEAD = 64 * 1024
CHAT_ATTACHMENTS_PER_MINUTE = setting(
    env.int, "CHAT_ATTACHMENTS_PER_MINUTE", 10, validate=at_least_zero
)
# Images over this many pixels are refused (Pillow's decompression-bomb guard), and
# thumbnails fit in a square of CHAT_THUMBNAIL_SIZE pixels.
CHAT_ATTACHMENT_MAX_PIXELS = setting(
    env.int, "CHAT_ATTACHMENT_MAX_PIXELS", 40_000_000, validate=positive
)
CHAT_THUMBNAIL_SIZE = 480
# An animation (GIF, WebP) is re-encoded frame by frame: at most this many frames, and
# all of them within CHAT_ATTACHMENT_MAX_PIXELS together (rooms/attachments.py
# check_frames; a frame costs ~0.1 ms to re-encode however small, 500,000 one-pixel
# frames fit in 10 MiB).
CHAT_ATTACHMENT_MAX_FRAMES = setting(env.int, "CHAT_ATTACHMENT_MAX_FRAMES", 1000, validate=positive)
# Production: a path prefix the proxy in front serves from MEDIA_ROOT as an `internal`
# location (nginx); the view checks access, then answers with an empty body and
# X-Accel-Redirect: <prefix><file name>, and the proxy sends the file (README).
CHAT_ATTACHMENT_ACCEL_REDIRECT = setting(env.str, "CHAT_ATTACHMENT_ACCEL_REDIRECT", "")
# Patches of Daphne, autobahn and Twisted internals (http_guard.py, socket_limits.py,
# twisted_writes.py) name the exact versions they were verified with; on others the
# server refuses to start unless this is true (realtime/upstream.py).
CHAT_ALLOW_UNVERIFIED_DAPHNE = setting(env.bool, "CHAT_ALLOW_UNVERIFIED_DAPHNE", False)
# Scripts and sockets only from our own origin: no inline script, no eval, so even a chat
# line that slipped past escaping could not run. No inline style either but the one
# <style> that carries this response's nonce: the per-viewer rule in templates/base.html
# (keyed on the viewer's username). django-csp adds the nonce only to responses that use it.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "connect-src": [csp.SELF],
        "style-src": [csp.SELF, csp.NONCE],
        "img-src": [csp.SELF, "data:"],
        "object-src": [csp.NONE],
        "base-uri": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    }
}
if STORAGE_S3_BUCKET:
    # Images are fetched from the store itself (a presigned URL the view redirects to).
    # AWS (no endpoint set) signs virtual-hosted URLs, global or regional.
    store_origins = (
        [STORAGE_S3_ENDPOINT_URL.rstrip("/")]
        if STORAGE_S3_ENDPOINT_URL
        else [
            f"https://{STORAGE_S3_BUCKET}.s3.amazonaws.com",
            f"https://{STORAGE_S3_BUCKET}.s3.{STORAGE_S3_REGION or 'us-east-1'}.amazonaws.com",
        ]
    )
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["img-src"] = [csp.SELF, "data:", *store_origins]
# Database sessions that never look up a key Django could not have made (a NUL from a
# cookie was a 500 on PostgreSQL): site_config/sessions.py.
SESSION_ENGINE = "site_config.sessions"

# Chat limits, in one place so that forms, consumers and docs agree.
CHAT_MESSAGE_MAX_LENGTH = 4000
CHAT_HISTORY_LENGTH = 50
# A socket that reconnects is sent what it missed if that is at most this many changes;
# past it, the page is told to reload instead (it shows the newest messages then).
CHAT_CATCHUP_LIMIT = setting(env.int, "CHAT_CATCHUP_LIMIT", 500, validate=at_least_zero)
# Each message's catch-up HTML is kept per version (rooms/services.py RenderedMessages):
# this many messages per process, the least recently sent dropped first (a plain message
# ~1.5 KB: ~6 MB when full, and only what catch-ups sent).
CHAT_RENDER_CACHE_SIZE = setting(env.int, "CHAT_RENDER_CACHE_SIZE", 4096, validate=positive)
# The author may edit a message for this many minutes after sending it (0: never).
CHAT_EDIT_WINDOW_MINUTES = setting(env.int, "CHAT_EDIT_WINDOW_MINUTES", 15, validate=at_least_zero)
CHAT_RATE_BURST = setting(env.int, "CHAT_RATE_BURST", 10, validate=at_least_zero)
CHAT_RATE_PER_SECOND = setting(env.float, "CHAT_RATE_PER_SECOND", 1.0, validate=at_least_zero)
# A connection counts as online while its process heartbeats it; a process that dies
# without cleaning up has its users expire after this many seconds.
CHAT_PRESENCE_TTL = setting(env.int, "CHAT_PRESENCE_TTL", 60, validate=positive)
CHAT_PRESENCE_HEARTBEAT = CHAT_PRESENCE_TTL / 3
# A user whose last socket closed counts as online this many seconds more, so that a
# reload or a reconnect is no leave-and-join in everyone's log (rooms/presence.py).
CHAT_PRESENCE_LEAVE_GRACE = setting(
    env.float, "CHAT_PRESENCE_LEAVE_GRACE", 5.0, validate=at_least_zero
)
# Joins and leaves are sent once per tick per room, however many there were.
CHAT_PRESENCE_TICK = 0.25
# A room's activity (the room lists' unread counts) leaves each process at most once per
# this many seconds; the first message after a quiet tick goes at once (rooms/attention.py).
CHAT_ACTIVITY_TICK = 1.0
# "ann is typing…": at most one per user per room this many seconds apart (the page
# shows it a little longer), and none in a room with more than this many online.
CHAT_TYPING_INTERVAL = 3.0
CHAT_TYPING_MAX_ONLINE = 100
# How often each process checks the channel layer, to resync its sockets after an outage.
CHAT_LAYER_CHECK_SECONDS = setting(env.float, "CHAT_LAYER_CHECK_SECONDS", 2.0, validate=positive)
# Seconds a stopping process (SIGTERM) gives the sockets it closed to reconnect elsewhere
# before announcing who left (realtime/lifecycle.py).
CHAT_SHUTDOWN_GRACE = setting(env.float, "CHAT_SHUTDOWN_GRACE", 2.0, validate=at_least_zero)
# Rooms: how many a user (not staff) may create in 24 hours, and rooms per list page.
CHAT_ROOMS_PER_USER_PER_DAY = setting(
    env.int, "CHAT_ROOMS_PER_USER_PER_DAY", 10, validate=at_least_zero
)
CHAT_ROOMS_PAGE_SIZE = setting(env.int, "CHAT_ROOMS_PAGE_SIZE", 50, validate=positive)
# A room's online list shows its first this many people (by name) and "and N more" linking
# to /rooms/<slug>/online/: every page and every connect's catch-up carries the list, and
# whole it grew with the room (150 KB at 1,000 online, past the 1 MiB a socket may leave
# unread at ~7,000; a connect storm's bytes O(N^2)). The count is always exact.
CHAT_ONLINE_LIST_LIMIT = setting(env.int, "CHAT_ONLINE_LIST_LIMIT", 100, validate=positive)
# What one socket may cost (realtime/limits.py, rooms/consumers.py). Closed with
# 1008: a socket with more than CHAT_SOCKET_MAX_QUEUED_FRAMES frames (or _BYTES) waiting
# for its consumer, or sending past its frame budget (a burst, then a sustained rate), and a
# user's socket past CHAT_MAX_SOCKETS_PER_USER in this process. Dropped: a socket with
# more than CHAT_SOCKET_MAX_BUFFERED_BYTES sent to it that it has not read.
CHAT_SOCKET_MAX_QUEUED_FRAMES = setting(
    env.int, "CHAT_SOCKET_MAX_QUEUED_FRAMES", 64, validate=at_least_zero
)
CHAT_SOCKET_MAX_QUEUED_BYTES = setting(
    env.int, "CHAT_SOCKET_MAX_QUEUED_BYTES", 1024 * 1024, validate=at_least_zero
)
CHAT_SOCKET_FRAME_BURST = setting(env.int, "CHAT_SOCKET_FRAME_BURST", 30, validate=at_least_zero)
CHAT_SOCKET_FRAMES_PER_SECOND = setting(
    env.float, "CHAT_SOCKET_FRAMES_PER_SECOND", 5.0, validate=at_least_zero
)
CHAT_SOCKET_MAX_BUFFERED_BYTES = setting(
    env.int, "CHAT_SOCKET_MAX_BUFFERED_BYTES", 1024 * 1024, validate=at_least_zero
)
CHAT_MAX_SOCKETS_PER_USER = setting(
    env.int, "CHAT_MAX_SOCKETS_PER_USER", 30, validate=at_least_zero
)

# Accounts (accounts/services.py). Log-ins, by django-axes: after LOGIN_FAILURE_LIMIT
# failures for one username, or from one address (each counted on its own), every log-in
# for it is refused with a 429 page, before any password is hashed, until
# LOGIN_COOLOFF_MINUTES after the last failure; attempts meanwhile do not extend it. A
# success does not reset the count: else one's own account would reset an address's
# count between guesses at others. Sign-ups: SIGNUPS_PER_HOUR per address, counted in the
# database (every process shares it). Addresses: accounts/addresses.py (IPv6 per /64;
# behind a proxy, the X-Forwarded-For entry it appended).
LOGIN_FAILURE_LIMIT = setting(env.int, "LOGIN_FAILURE_LIMIT", 5, validate=at_least_zero)
LOGIN_COOLOFF_MINUTES = setting(env.float, "LOGIN_COOLOFF_MINUTES", 15.0, validate=at_least_zero)
SIGNUPS_PER_HOUR = setting(env.int, "SIGNUPS_PER_HOUR", 10, validate=at_least_zero)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = False
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "accounts.addresses.client_address"
AXES_LOCKOUT_CALLABLE = "accounts.views.login_locked_out"
# No row per successful log-in kept forever (failures are kept for the cool-off only).
AXES_DISABLE_ACCESS_LOG = True

# A level name (DEBUG, INFO, WARNING, ERROR, CRITICAL) or number.
CHAT_LOG_LEVEL = setting(env.log_level, "CHAT_LOG_LEVEL", logging.INFO)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # Our own code logs one line per connect, leave, message and failure.
    "loggers": {
        app: {"level": CHAT_LOG_LEVEL} for app in ("accounts", "realtime", "rooms", "site_config")
    },
}

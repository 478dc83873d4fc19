"""Swarmsite settings: one module, driven by environment variables.

Every variable is listed in .env.example. Production is the default posture:
DJANGO_DEBUG must be set to true explicitly for local development helpers.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)

# A development key is only acceptable while DEBUG is on. Without
# DJANGO_SECRET_KEY in production the key stays empty: the server refuses to
# start (swarmsite.startup), and Django refuses any use of the key, while
# commands that need none (migrate, makemigrations --check) still run.
_DEV_SECRET_KEY = "django-insecure-swarmsite-development-key-never-use-in-production"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and SECRET_KEY == _DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "The development secret key cannot be used with DJANGO_DEBUG off."
    )

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "channels",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "swarmsite",
    "audit",
    "tasks",
    "conversations",
    # Top layer: these import the domain apps; nothing imports them.
    "streams",
    "ingest",
    "reports",
    "ops",
]

MIDDLEWARE = [
    # First, so it counts and times every request, including refused ones.
    "swarmsite.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A database that does not answer gives 503, not 500, outside DRF too.
    "swarmsite.middleware.DatabaseUnavailableMiddleware",
    # Queues an audit record of every /api/ request; written in bulk.
    "audit.middleware.RequestAuditMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "swarmsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

WSGI_APPLICATION = "swarmsite.wsgi.application"
ASGI_APPLICATION = "swarmsite.asgi.application"

DATA_DIR = Path(env.str("SWARMSITE_DATA_DIR", default=str(BASE_DIR / "data")))

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'swarmsite.sqlite3'}"
    )
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at
    # BEGIN so concurrent writers queue on the busy timeout instead of failing
    # with "database is locked" when they upgrade a read transaction.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
        "init_command": (
            "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA foreign_keys=ON;"
        ),
    }
    # Threaded and multi-process tests need a real file, not shared memory.
    _db["TEST"] = {"NAME": str(DATA_DIR / "test_swarmsite.sqlite3")}
    if not str(_db["NAME"]).startswith(":memory:"):
        DATA_DIR.mkdir(parents=True, exist_ok=True)
elif _db["ENGINE"] in (
    "django.db.backends.postgresql",
    "django.db.backends.postgresql_psycopg2",
):
    _db["ENGINE"] = "django.db.backends.postgresql"
    # Under ASGI each request may run on another thread: pooled connections
    # are handed back after every request instead of being kept per thread.
    _db["CONN_MAX_AGE"] = 0
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
        # A request waits this long for a connection, then answers 503.
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=3.0),
        # psycopg_pool retries a lost connection with a doubling delay for
        # this long; a short span lets the next request start a fresh
        # attempt, so the pool is back within a second or two of PostgreSQL.
        "reconnect_timeout": env.float("DATABASE_POOL_RECONNECT_TIMEOUT", default=2.0),
    }
    _db["OPTIONS"].setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=3)
    )
    # With a pool, this makes psycopg check a connection at checkout, so one
    # broken by a PostgreSQL restart is replaced instead of failing a request.
    _db["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_HEALTH_CHECKS", default=True)
    _db["TEST"] = {"NAME": env.str("DATABASE_TEST_NAME", default="") or None}
else:
    raise ImproperlyConfigured(
        f"DATABASE_URL must be sqlite:// or postgres://, not {_db['ENGINE']}."
    )
_db["ATOMIC_REQUESTS"] = False

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A short connect timeout: while Redis is down, a commit's
            # notification fails fast instead of holding the request.
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_connect_timeout": 1,
                        "socket_keepalive": True,
                    }
                ]
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Fault injection only (tests, benchmarks): a dotted channel layer class that
# replaces the backend above, keeping its CONFIG.
if _layer_override := env.str("CHANNEL_LAYER_BACKEND", default=""):
    CHANNEL_LAYERS["default"]["BACKEND"] = _layer_override

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# daphne serves no static files: WhiteNoise serves the admin's, straight from
# the apps while DEBUG is on, from `collectstatic` output in production.
WHITENOISE_USE_FINDERS = DEBUG
if DEBUG:
    # WhiteNoise warns on every request when STATIC_ROOT does not exist.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Behind TLS in production; DJANGO_DEBUG=true turns these off for local HTTP.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int(
    "DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    # Bearer first: its WWW-Authenticate header makes missing credentials a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "swarmsite.authentication.BearerKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["swarmsite.permissions.HasScope"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "swarmsite.pagination.CreatedCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["swarmsite.throttling.PrincipalRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "principal": env.str("API_THROTTLE_RATE", default="6000/minute")
    },
    "DEFAULT_PARSER_CLASSES": ["swarmsite.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "swarmsite.exceptions.exception_handler",
    # drf-spectacular's AutoSchema, plus the error answers of every operation.
    "DEFAULT_SCHEMA_CLASS": "swarmsite.schema.SwarmsiteAutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Swarmsite API",
    "DESCRIPTION": "Persistence and live observability for multi-agent systems.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Deny by default: the schema and its docs need a key or a staff session.
    "SERVE_PERMISSIONS": ["swarmsite.permissions.HasScope"],
    # Swagger UI from drf-spectacular-sidecar's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `status`: name the sets instead of hashing them.
    "ENUM_NAME_OVERRIDES": {
        "ConversationStatusEnum": "conversations.models.ConversationStatus",
        "TaskStatusEnum": "tasks.models.TaskStatus",
        "AgentStatusEnum": "tasks.models.AgentStatus",
        "RunStatusEnum": "tasks.models.RunStatus",
    },
}

# Request bodies: a full 5,000-item ingest batch fits; larger bodies get 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=16 * 1024 * 1024)
INGEST_MAX_ITEMS = env.int("INGEST_MAX_ITEMS", default=5000)

# GET /api/v1/stats/: widest window accepted, and most entries per breakdown
# (by agent, by model, by endpoint); the totals always cover everything.
STATS_MAX_WINDOW_DAYS = env.int("STATS_MAX_WINDOW_DAYS", default=31)
STATS_MAX_GROUPS = env.int("STATS_MAX_GROUPS", default=100)

# Audit records of API requests (audit.middleware): on or off; seconds between
# bulk writes (0: no background writer, only explicit flushes); records per
# write; most records waiting before new ones are dropped (and counted).
AUDIT_REQUESTS = env.bool("AUDIT_REQUESTS", default=True)
AUDIT_REQUEST_FLUSH_SECONDS = env.float("AUDIT_REQUEST_FLUSH_SECONDS", default=1.0)
AUDIT_REQUEST_BATCH_SIZE = env.int("AUDIT_REQUEST_BATCH_SIZE", default=1000)
AUDIT_REQUEST_QUEUE_SIZE = env.int("AUDIT_REQUEST_QUEUE_SIZE", default=50000)

# WebSocket streams (streams.consumers).
STREAM_HEARTBEAT_SECONDS = env.float("STREAM_HEARTBEAT_SECONDS", default=10.0)
# How often a subscriber re-reads the log on its own, healing a lost doorbell.
STREAM_POLL_SECONDS = env.float("STREAM_POLL_SECONDS", default=2.0)
STREAM_AUTH_TIMEOUT_SECONDS = env.float("STREAM_AUTH_TIMEOUT_SECONDS", default=5.0)
STREAM_MAX_FRAME_BYTES = env.int("STREAM_MAX_FRAME_BYTES", default=64 * 1024)
STREAM_MAX_SUBSCRIPTIONS = env.int("STREAM_MAX_SUBSCRIPTIONS", default=100)
# Events a subscriber may have unsent before it is told it lags and closed.
STREAM_MAX_BUFFERED_EVENTS = env.int("STREAM_MAX_BUFFERED_EVENTS", default=10000)
# Bytes queued in the server's socket buffer for a client that does not read;
# above it the stream pauses instead of queueing more.
STREAM_MAX_SEND_BUFFER_BYTES = env.int(
    "STREAM_MAX_SEND_BUFFER_BYTES", default=1024 * 1024
)

# GET /metrics: a bearer token for the Prometheus scraper (unset: only
# admin-scope API keys may read the metrics).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# GET /readyz gives up on the database (and the channel layer) after this.
READYZ_TIMEOUT_SECONDS = env.float("READYZ_TIMEOUT_SECONDS", default=1.5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

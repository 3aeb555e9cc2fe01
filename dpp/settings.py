"""Django settings for DPP, read from the environment.

Every value has a working local default, except secrets outside development and tests
(DPP_ENV=production refuses to start without DJANGO_SECRET_KEY, DPP_KEY_PEPPER,
DPP_WEBHOOK_ENCRYPTION_KEY and ALLOWED_HOSTS,
and with the repository's development secrets). DPP_ENV unset is development only on a local
database: with a DATABASE_URL on another host the process refuses to start. Bad values fail
loudly at start (see dpp/env.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from dpp.aws import client_config_options, configure_aws_environment
from dpp.env import env_bool, env_int, env_list, env_str, is_local_database_url, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dpp")
DPP_ENV = env_str("DPP_ENV")
if DPP_ENV is None:
    # Unset means a developer's machine. A database elsewhere means a deployment that forgot
    # DPP_ENV: it would run with the repository's development secrets, so it does not start.
    if not is_local_database_url(DATABASE_URL):
        raise ImproperlyConfigured(
            "DPP_ENV is not set and DATABASE_URL points at another host: set DPP_ENV=production (with "
            "DJANGO_SECRET_KEY, DPP_KEY_PEPPER and ALLOWED_HOSTS), or DPP_ENV=development explicitly")
    DPP_ENV = "development"
if DPP_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"DPP_ENV must be development, test or production, got {DPP_ENV!r}")
_LOCAL = DPP_ENV in {"development", "test"}
PRODUCTION = DPP_ENV == "production"

_DEVELOPMENT_SECRETS = {
    "DJANGO_SECRET_KEY": "dpp-local-development-secret-key-not-for-production",
    "DPP_KEY_PEPPER": "dpp-local-development-pepper",
    "DPP_WEBHOOK_ENCRYPTION_KEY": "dpp-local-development-webhook-key",
}


def _secret(name: str) -> str:
    value = env_str(name)
    if _LOCAL:
        return value or _DEVELOPMENT_SECRETS[name]
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when DPP_ENV={DPP_ENV}")
    if value == _DEVELOPMENT_SECRETS[name]:
        raise ImproperlyConfigured(f"{name} is the repository's development value: set a secret of your own")
    return value


SECRET_KEY = _secret("DJANGO_SECRET_KEY")
DPP_KEY_PEPPER = _secret("DPP_KEY_PEPPER")
# Encrypts webhook signing secrets at rest. Comma-separated: the first key encrypts, every key
# decrypts (rotate by prepending a new key, re-encrypting, then dropping the old one).
DPP_WEBHOOK_ENCRYPTION_KEY = _secret("DPP_WEBHOOK_ENCRYPTION_KEY")
DEBUG = env_bool("DJANGO_DEBUG", False)
if DEBUG and PRODUCTION:
    raise ImproperlyConfigured("DJANGO_DEBUG must be false when DPP_ENV=production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DPP_ENV=production (the API's host names)")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "tenants",
    "billing",
    "runs",
    "runs.webhooks",
]

MIDDLEWARE = [
    "dpp.middleware.RequestMetricsMiddleware",
    "dpp.middleware.RequestContextMiddleware",
    "dpp.middleware.BodySizeLimitMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dpp.urls"
WSGI_APPLICATION = "dpp.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "dpp" / "templates"],
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

DATABASES = {"default": parse_database_url(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Django's PostgreSQL backend, minus the health check of a connection that just served a request
# without error (one round trip per request under load; dpp/db/base.py).
DATABASES["default"]["ENGINE"] = "dpp.db"
# TCP keepalives and a user timeout: a database host that vanishes without closing its sockets
# (a failover, a dead network path) is noticed in about 25 s, not after minutes of TCP
# retransmission, so a worker's retry budget (DPP_WORKER_DB_RETRY_SECONDS) and the heartbeat
# see the error while the run can still be finished.
DATABASES["default"]["OPTIONS"] = {
    "connect_timeout": 5,
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # ms of unacknowledged data
}
# API processes (dpp/wsgi.py sets DPP_API_PROCESS) bound every statement, lock wait and idle
# transaction on their connections: a slow query or a held lock answers 503 instead of piling up
# requests. Workers and commands (check_ledger, the reaper) keep the server's defaults.
DPP_API_STATEMENT_TIMEOUT_MS = env_int("DPP_API_STATEMENT_TIMEOUT_MS", 5000, minimum=100)
DPP_API_LOCK_TIMEOUT_MS = env_int("DPP_API_LOCK_TIMEOUT_MS", 2000, minimum=100)
DPP_API_IDLE_IN_TRANSACTION_TIMEOUT_MS = env_int("DPP_API_IDLE_IN_TRANSACTION_TIMEOUT_MS", 10000, minimum=100)
if env_bool("DPP_API_PROCESS", False):
    DATABASES["default"]["OPTIONS"]["options"] = (
        f"-c statement_timeout={DPP_API_STATEMENT_TIMEOUT_MS} -c lock_timeout={DPP_API_LOCK_TIMEOUT_MS} "
        f"-c idle_in_transaction_session_timeout={DPP_API_IDLE_IN_TRANSACTION_TIMEOUT_MS}"
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
# Admin static files are served by the app itself (whitenoise), DEBUG or not, behind any server:
# production runs `collectstatic` into STATIC_ROOT (the Dockerfile and `make run` do); locally
# whitenoise also finds them in the apps directly, so runserver and the tests need no collectstatic.
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DPP_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = _LOCAL

# --- Behind a TLS proxy, and production's cookies ----------------------------------------------
# DPP_TRUST_X_FORWARDED_PROTO: only when a proxy you run sets X-Forwarded-Proto (and strips a
# client's own), so Django knows the request came over HTTPS (secure cookies, CSRF's origin check).
if env_bool("DPP_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The https:// origins the admin is reached at (its login and forms post there), e.g.
# https://dpp.example.com. Needed behind a proxy whose Host differs from the browser's origin.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_SECURE = env_bool("DPP_SECURE_COOKIES", PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("DPP_SSL_REDIRECT", True)
    # Load balancers probe over plain HTTP: no redirect for the health endpoints.
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("DPP_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DPP_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DPP_HSTS_PRELOAD", True)

# --- API -----------------------------------------------------------------------------------
DPP_MAX_BODY_BYTES = env_int("DPP_MAX_BODY_BYTES", 256 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = DPP_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["dpp.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "dpp.problems.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "DPP: Decision Pack Platform API",
    "DESCRIPTION": "Pay-per-run API for AI agents: submit a run with a spend cap, poll it, fetch its result.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1: the events DPP sends are documented as OpenAPI webhooks.
    "OAS_VERSION": "3.1.0",
    # One name for the event types a subscriber may name (endpoints' event_types, runs' webhook.events).
    "ENUM_NAME_OVERRIDES": {"WebhookEventTypeEnum": "runs.webhooks.models.SUBSCRIBABLE_EVENT_TYPES"},
    "WEBHOOKS": [f"runs.webhooks.openapi.{name}" for name in
                 ("run_completed", "run_failed", "run_canceled", "run_started", "webhook_test")],
}

CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_ALLOW_CREDENTIALS = False  # API keys travel in a header, never in cookies.
CORS_EXPOSE_HEADERS = [
    "Location", "X-Request-ID", "Idempotent-Replayed", "X-DPP-Cost-Reserved", "X-DPP-Cost-Minimum-Fee",
    "X-DPP-Cost-Actual", "RateLimit", "RateLimit-Policy", "Retry-After",
]
CORS_ALLOW_HEADERS = ["authorization", "content-type", "idempotency-key", "x-request-id"]
if "*" in CORS_ALLOWED_ORIGINS:
    raise ImproperlyConfigured("CORS_ALLOWED_ORIGINS must list origins; '*' is refused")

# --- AWS (SQS broker and S3 results) ---------------------------------------------------------
AWS = configure_aws_environment(local=_LOCAL)
AWS_DEFAULT_REGION = AWS.region
DPP_QUEUE_NAME = env_str("DPP_QUEUE_NAME", "dpp-runs")
DPP_QUEUE_PREFIX = env_str("DPP_QUEUE_PREFIX", "")
# The queue's URL (real AWS: `aws sqs get-queue-url`). When set, the broker uses it as a
# predefined queue: no ListQueues, GetQueueUrl nor CreateQueue, so the IAM policy stays small.
DPP_QUEUE_URL = env_str("DPP_QUEUE_URL", "")
# Periodic jobs (reaper, reconciler, outbox, retention) ride a queue and a worker of their own, so
# a backlog of long runs never delays a refund or a reap (runs/schedule.py, Procfile `periodic`).
DPP_PERIODIC_QUEUE_NAME = env_str("DPP_PERIODIC_QUEUE_NAME", f"{DPP_QUEUE_NAME}-periodic")
if DPP_PERIODIC_QUEUE_NAME == DPP_QUEUE_NAME:
    raise ImproperlyConfigured("DPP_PERIODIC_QUEUE_NAME must differ from DPP_QUEUE_NAME")
DPP_RESULT_BUCKET = env_str("DPP_RESULT_BUCKET", "dpp-results")
# The S3 endpoint presigned result URLs are built for, when clients reach S3 by another name than
# the workers do (compose: the workers say http://emulator:5000, a client http://127.0.0.1:5000).
DPP_S3_PUBLIC_ENDPOINT_URL = env_str("DPP_S3_PUBLIC_ENDPOINT_URL", "") or None

# --- Timing knobs (seconds) --------------------------------------------------------------------
DPP_LEASE_SECONDS = env_int("DPP_LEASE_SECONDS", 120, minimum=2)
DPP_HEARTBEAT_SECONDS = env_int("DPP_HEARTBEAT_SECONDS", 30, minimum=1)
if DPP_HEARTBEAT_SECONDS >= DPP_LEASE_SECONDS:
    raise ImproperlyConfigured("DPP_HEARTBEAT_SECONDS must be shorter than DPP_LEASE_SECONDS")
# A lease never reaches past the run's start + its timebox + this grace (issue 15, item 4); the
# run task's hard time limit (a backstop for a pack blocked in native code) is the longest
# timebox + this grace + the time finalization may take.
DPP_LEASE_GRACE_SECONDS = env_int("DPP_LEASE_GRACE_SECONDS", 60, minimum=1)
DPP_MAX_TIMEBOX_SECONDS = 90
# How long a worker retries a state transition while PostgreSQL is unreachable before it gives
# up (runs/worker.py with_db_reconnect); the time limit leaves room for one outage before the
# pack (the lease claim) and one after it (finalization).
DPP_WORKER_DB_RETRY_SECONDS = env_int("DPP_WORKER_DB_RETRY_SECONDS", 90, minimum=0, maximum=3600)
DPP_RUN_TASK_TIME_LIMIT_SECONDS = (DPP_MAX_TIMEBOX_SECONDS + DPP_LEASE_GRACE_SECONDS + 120
                                   + 2 * DPP_WORKER_DB_RETRY_SECONDS)
DPP_REAPER_INTERVAL_SECONDS = env_int("DPP_REAPER_INTERVAL_SECONDS", 30, minimum=1)
DPP_RECONCILE_AFTER_SECONDS = env_int("DPP_RECONCILE_AFTER_SECONDS", 300, minimum=1)
# A claim whose S3 receipt cannot be read (any error but "no such object") this long after the
# claim goes to an operator as AUDIT_REQUIRED (issue 15, item 3).
DPP_RECONCILE_GIVE_UP_SECONDS = env_int("DPP_RECONCILE_GIVE_UP_SECONDS", 6 * 3600, minimum=60)
if DPP_RECONCILE_GIVE_UP_SECONDS <= DPP_RECONCILE_AFTER_SECONDS:
    raise ImproperlyConfigured("DPP_RECONCILE_GIVE_UP_SECONDS must be longer than DPP_RECONCILE_AFTER_SECONDS")
DPP_RECONCILE_INTERVAL_SECONDS = env_int("DPP_RECONCILE_INTERVAL_SECONDS", 60, minimum=1)
DPP_OUTBOX_INTERVAL_SECONDS = env_int("DPP_OUTBOX_INTERVAL_SECONDS", 30, minimum=1)
DPP_RESULT_URL_SECONDS = env_int("DPP_RESULT_URL_SECONDS", 600, minimum=1, maximum=7 * 24 * 3600)
# Retention drains its backlog in one pass per hour for at most this long (issue 15, item 1).
DPP_RETENTION_BUDGET_SECONDS = env_int("DPP_RETENTION_BUDGET_SECONDS", 600, minimum=1, maximum=3000)
DPP_REAPER_BATCH_SIZE = env_int("DPP_REAPER_BATCH_SIZE", 100, minimum=1, maximum=10_000)
DPP_RUN_QUEUE_DEADLINE_SECONDS = env_int("DPP_RUN_QUEUE_DEADLINE_SECONDS", 3600, minimum=1)
DPP_READYZ_CACHE_SECONDS = float(env_int("DPP_READYZ_CACHE_MS", 1500, minimum=0, maximum=10_000)) / 1000
DPP_LAST_USED_DEBOUNCE_SECONDS = env_int("DPP_LAST_USED_DEBOUNCE_SECONDS", 60, minimum=0)
# The relay (manage.py run_relay): runs per batch, and its poll when no commit wakes it (ms).
DPP_RELAY_BATCH_SIZE = env_int("DPP_RELAY_BATCH_SIZE", 100, minimum=1, maximum=1000)
DPP_RELAY_POLL_SECONDS = env_int("DPP_RELAY_POLL_MS", 500, minimum=50, maximum=60_000) / 1000
# Authentication caches a key's lookup in-process this long (ms): a revoked key or a suspended
# tenant is refused at most this late. 0 turns the cache off.
DPP_AUTH_CACHE_SECONDS = env_int("DPP_AUTH_CACHE_MS", 1000, minimum=0, maximum=2000) / 1000

# Pack classes the registry loads; operators append their own dotted paths.
DPP_PACKS = env_list("DPP_PACKS", ["runs.packs.decision.DecisionPack"])
# Fault injection for drills; honoured only when DPP_ENV=test.
DPP_FAULT = env_str("DPP_FAULT", "") if DPP_ENV == "test" else ""

# --- Webhooks (DESIGN section 7) ------------------------------------------------------------------
# Deliveries travel on their own queue so a slow receiver never delays runs.
DPP_WEBHOOK_QUEUE_NAME = env_str("DPP_WEBHOOK_QUEUE_NAME", "dpp-webhooks")
# Seconds between attempts: "1,2,3" means four attempts. Default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
_retry_schedule = env_list("DPP_WEBHOOK_RETRY_SCHEDULE", ["5", "300", "1800", "7200", "18000", "36000", "36000"])
try:
    DPP_WEBHOOK_RETRY_SCHEDULE = [int(item, 10) for item in _retry_schedule]
except ValueError:
    raise ImproperlyConfigured(
        f"DPP_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds, got {_retry_schedule!r}") from None
if any(delay < 0 or delay > 7 * 24 * 3600 for delay in DPP_WEBHOOK_RETRY_SCHEDULE) or len(
        DPP_WEBHOOK_RETRY_SCHEDULE) > 20:
    raise ImproperlyConfigured("DPP_WEBHOOK_RETRY_SCHEDULE: at most 20 delays, each 0..604800 seconds")
DPP_WEBHOOK_TIMEOUT_SECONDS = env_int("DPP_WEBHOOK_TIMEOUT_SECONDS", 15, minimum=1, maximum=60)
# An attempt whose worker died is picked up again by the sweep after this many seconds.
DPP_WEBHOOK_CLAIM_SECONDS = env_int("DPP_WEBHOOK_CLAIM_SECONDS", 60, minimum=2, maximum=3600)
if DPP_WEBHOOK_CLAIM_SECONDS <= DPP_WEBHOOK_TIMEOUT_SECONDS:
    raise ImproperlyConfigured("DPP_WEBHOOK_CLAIM_SECONDS must be longer than DPP_WEBHOOK_TIMEOUT_SECONDS")
# A due delivery whose message was sent but not taken is sent again after this many seconds.
DPP_WEBHOOK_REQUEUE_SECONDS = env_int("DPP_WEBHOOK_REQUEUE_SECONDS", 60, minimum=1, maximum=3600)
DPP_WEBHOOK_SWEEP_INTERVAL_SECONDS = env_int("DPP_WEBHOOK_SWEEP_INTERVAL_SECONDS", 5, minimum=1, maximum=3600)
DPP_WEBHOOK_SWEEP_BATCH_SIZE = env_int("DPP_WEBHOOK_SWEEP_BATCH_SIZE", 200, minimum=1, maximum=10_000)
# Receivers on these networks are allowed despite being non-public: for local development and
# tests only (e.g. 127.0.0.0/8); refused in production.
DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = env_list("DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS", [])
if DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS and not _LOCAL:
    raise ImproperlyConfigured("DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS is refused when DPP_ENV=production")
try:
    import ipaddress as _ipaddress

    for _cidr in DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS:
        _ipaddress.ip_network(_cidr, strict=False)
except ValueError as _error:
    raise ImproperlyConfigured(f"DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS: {_error}") from None
# Plain http:// receivers are accepted only outside production.
DPP_WEBHOOK_ALLOW_HTTP = _LOCAL

# --- Celery ---------------------------------------------------------------------------------------
# Tasks travel on SQS. (Flower alone runs with DPP_CELERY_BROKER_URL set to DPP_EVENTS_URL: it
# only reads events, which travel on Redis; see dpp/worker_steps.py.)
CELERY_BROKER_URL = env_str("DPP_CELERY_BROKER_URL", "sqs://")
if CELERY_BROKER_URL.startswith("sqs://"):
    # kombu's SQS transport with the fix for failed receives (see dpp/sqs_transport.py).
    CELERY_BROKER_TRANSPORT = "dpp.sqs_transport:Transport"
# Worker monitoring events (for Flower) go to this Redis; empty disables them.
_events_url = os.environ.get("DPP_EVENTS_URL")
DPP_EVENTS_URL = REDIS_URL if _events_url is None else _events_url.strip()  # set but empty: off
CELERY_DPP_EVENTS_URL = DPP_EVENTS_URL
CELERY_WORKER_CONSUMER = "dpp.worker_steps:DppConsumer"
DPP_SQS_WAIT_SECONDS = env_int("DPP_SQS_WAIT_SECONDS", 10, minimum=0, maximum=20)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "region": AWS.region,
    # The queue's visibility timeout equals the lease: a dead worker's message comes back when
    # its lease ends. The heartbeat extends both together.
    "visibility_timeout": DPP_LEASE_SECONDS,
    "wait_time_seconds": DPP_SQS_WAIT_SECONDS,
    "polling_interval": float(env_int("DPP_SQS_POLLING_INTERVAL_MS", 1000, minimum=0)) / 1000,
    "queue_name_prefix": DPP_QUEUE_PREFIX,
    # kombu's boto3 clients (publish, ack, visibility): a short connect, a read above the long
    # poll, few retries, so a stalled SQS costs seconds, never minutes.
    "client-config": client_config_options(read_timeout=DPP_SQS_WAIT_SECONDS + 5),
}
# With predefined queues kombu knows only the queues listed: the periodic jobs' and the webhook
# deliveries' queues need their URLs too.
DPP_PERIODIC_QUEUE_URL = env_str("DPP_PERIODIC_QUEUE_URL", "")
DPP_WEBHOOK_QUEUE_URL = env_str("DPP_WEBHOOK_QUEUE_URL", "")
if DPP_QUEUE_URL:
    _missing = [name for name, value in (("DPP_PERIODIC_QUEUE_URL", DPP_PERIODIC_QUEUE_URL),
                                         ("DPP_WEBHOOK_QUEUE_URL", DPP_WEBHOOK_QUEUE_URL)) if not value]
    if _missing:
        raise ImproperlyConfigured(f"DPP_QUEUE_URL is set (predefined queues): set {' and '.join(_missing)} too")
    CELERY_BROKER_TRANSPORT_OPTIONS["predefined_queues"] = {
        DPP_QUEUE_PREFIX + DPP_QUEUE_NAME: {"url": DPP_QUEUE_URL},
        DPP_QUEUE_PREFIX + DPP_PERIODIC_QUEUE_NAME: {"url": DPP_PERIODIC_QUEUE_URL},
        DPP_QUEUE_PREFIX + DPP_WEBHOOK_QUEUE_NAME: {"url": DPP_WEBHOOK_QUEUE_URL},
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = DPP_QUEUE_NAME
# Webhook delivery attempts never wait behind runs (their sweep is a periodic job: runs/schedule.py).
CELERY_TASK_ROUTES = {"runs.webhooks.tasks.webhook_delivery_attempt_task": {"queue": DPP_WEBHOOK_QUEUE_NAME}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_WORKER_SEND_TASK_EVENTS = bool(DPP_EVENTS_URL)  # over Redis, never over SQS
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "dpp.beat:DatabaseScheduler"  # rides out a PostgreSQL outage (dpp/beat.py)
CELERY_TIMEZONE = "UTC"

# --- Logging --------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL must be a logging level name, got {LOG_LEVEL!r}")
DPP_JSON_LOGS = env_bool("DPP_JSON_LOGS", True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "dpp.logging.ContextFilter"}},
    "formatters": {
        "json": {"()": "dpp.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s trace=%(trace_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["context"],
            "formatter": "json" if DPP_JSON_LOGS else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

# --- Metrics (dpp/metrics.py; PROMETHEUS_MULTIPROC_DIR is read by prometheus_client itself) ------------
# Bearer token a scrape of /metrics (and of the workers' metrics port) must present; empty: open.
DPP_METRICS_TOKEN = env_str("DPP_METRICS_TOKEN", "") or ""
# The Celery worker parent serves its children's metrics here; 0 disables it.
DPP_WORKER_METRICS_PORT = env_int("DPP_WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)
DPP_WORKER_METRICS_ADDR = env_str("DPP_WORKER_METRICS_ADDR", "127.0.0.1")
if DPP_WORKER_METRICS_PORT and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # The prefork children count the runs; without the shared directory the parent's server
    # would show none of it.
    raise ImproperlyConfigured("DPP_WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR (see docs/OPERATIONS.md)")
# Statement timeout of the database gauges read at each scrape (and by the admin ops page).
DPP_METRICS_DB_TIMEOUT_MS = env_int("DPP_METRICS_DB_TIMEOUT_MS", 2000, minimum=100, maximum=60_000)

DPP_VERSION = os.environ.get("DPP_VERSION", "0.1.0")

"""Django settings for DPP, read from the environment.

Every value has a working local default, except secrets outside development and tests
(DPP_ENV=production refuses to start without DJANGO_SECRET_KEY and DPP_KEY_PEPPER).
Bad values fail loudly at start (see dpp/env.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from dpp.aws import configure_aws_environment
from dpp.env import env_bool, env_int, env_list, env_str, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

DPP_ENV = env_str("DPP_ENV", "development")
if DPP_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"DPP_ENV must be development, test or production, got {DPP_ENV!r}")
_LOCAL = DPP_ENV in {"development", "test"}


def _secret(name: str, local_default: str) -> str:
    value = env_str(name)
    if value:
        return value
    if _LOCAL:
        return local_default
    raise ImproperlyConfigured(f"{name} must be set when DPP_ENV={DPP_ENV}")


SECRET_KEY = _secret("DJANGO_SECRET_KEY", "dpp-local-development-secret-key-not-for-production")
DPP_KEY_PEPPER = _secret("DPP_KEY_PEPPER", "dpp-local-development-pepper")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver", "[::1]"])

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
]

MIDDLEWARE = [
    "dpp.middleware.RequestContextMiddleware",
    "dpp.middleware.BodySizeLimitMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
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

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dpp")
DATABASES = {"default": parse_database_url(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["OPTIONS"] = {"connect_timeout": 5}
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
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

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
# Periodic jobs (reaper, reconciler, outbox, retention) ride a queue and a worker of their own, so
# a backlog of long runs never delays a refund or a reap (runs/schedule.py, Procfile `periodic`).
DPP_PERIODIC_QUEUE_NAME = env_str("DPP_PERIODIC_QUEUE_NAME", f"{DPP_QUEUE_NAME}-periodic")
if DPP_PERIODIC_QUEUE_NAME == DPP_QUEUE_NAME:
    raise ImproperlyConfigured("DPP_PERIODIC_QUEUE_NAME must differ from DPP_QUEUE_NAME")
DPP_RESULT_BUCKET = env_str("DPP_RESULT_BUCKET", "dpp-results")

# --- Timing knobs (seconds) --------------------------------------------------------------------
DPP_LEASE_SECONDS = env_int("DPP_LEASE_SECONDS", 120, minimum=2)
DPP_HEARTBEAT_SECONDS = env_int("DPP_HEARTBEAT_SECONDS", 30, minimum=1)
if DPP_HEARTBEAT_SECONDS >= DPP_LEASE_SECONDS:
    raise ImproperlyConfigured("DPP_HEARTBEAT_SECONDS must be shorter than DPP_LEASE_SECONDS")
DPP_REAPER_INTERVAL_SECONDS = env_int("DPP_REAPER_INTERVAL_SECONDS", 30, minimum=1)
DPP_RECONCILE_AFTER_SECONDS = env_int("DPP_RECONCILE_AFTER_SECONDS", 300, minimum=1)
DPP_RECONCILE_INTERVAL_SECONDS = env_int("DPP_RECONCILE_INTERVAL_SECONDS", 60, minimum=1)
DPP_OUTBOX_INTERVAL_SECONDS = env_int("DPP_OUTBOX_INTERVAL_SECONDS", 30, minimum=1)
DPP_RESULT_URL_SECONDS = env_int("DPP_RESULT_URL_SECONDS", 600, minimum=1, maximum=7 * 24 * 3600)
DPP_REAPER_BATCH_SIZE = env_int("DPP_REAPER_BATCH_SIZE", 100, minimum=1, maximum=10_000)
DPP_RUN_QUEUE_DEADLINE_SECONDS = env_int("DPP_RUN_QUEUE_DEADLINE_SECONDS", 3600, minimum=1)
DPP_READYZ_CACHE_SECONDS = float(env_int("DPP_READYZ_CACHE_MS", 1500, minimum=0, maximum=10_000)) / 1000
DPP_LAST_USED_DEBOUNCE_SECONDS = env_int("DPP_LAST_USED_DEBOUNCE_SECONDS", 60, minimum=0)

# Pack classes the registry loads; operators append their own dotted paths.
DPP_PACKS = env_list("DPP_PACKS", ["runs.packs.decision.DecisionPack"])
# Fault injection for drills; honoured only when DPP_ENV=test.
DPP_FAULT = env_str("DPP_FAULT", "") if DPP_ENV == "test" else ""

# --- Celery ---------------------------------------------------------------------------------------
# Tasks travel on SQS. (Flower alone runs with DPP_CELERY_BROKER_URL set to DPP_EVENTS_URL: it
# only reads events, which travel on Redis; see dpp/worker_steps.py.)
CELERY_BROKER_URL = env_str("DPP_CELERY_BROKER_URL", "sqs://")
# Worker monitoring events (for Flower) go to this Redis; empty disables them.
_events_url = os.environ.get("DPP_EVENTS_URL")
DPP_EVENTS_URL = REDIS_URL if _events_url is None else _events_url.strip()  # set but empty: off
CELERY_DPP_EVENTS_URL = DPP_EVENTS_URL
CELERY_WORKER_CONSUMER = "dpp.worker_steps:DppConsumer"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "region": AWS.region,
    # The queue's visibility timeout equals the lease: a dead worker's message comes back when
    # its lease ends. The heartbeat extends both together.
    "visibility_timeout": DPP_LEASE_SECONDS,
    "wait_time_seconds": env_int("DPP_SQS_WAIT_SECONDS", 10, minimum=0, maximum=20),
    "polling_interval": float(env_int("DPP_SQS_POLLING_INTERVAL_MS", 1000, minimum=0)) / 1000,
    "queue_name_prefix": env_str("DPP_QUEUE_PREFIX", ""),
}
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = DPP_QUEUE_NAME
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
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
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

DPP_VERSION = os.environ.get("DPP_VERSION", "0.1.0")

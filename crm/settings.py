"""Lichno settings: every value comes from the environment (django-environ), see .env.example.

Defaults need no services: SQLite in var/ and a filesystem Celery broker.
"""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = [o for o in env.list("CSRF_TRUSTED_ORIGINS", default=[]) if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "import_export",
    "phonenumber_field",
    "axes",
    "crm",
    "loyalty",
    "segments",
    "offers",
    "messaging",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "crm.urls"
WSGI_APPLICATION = "crm.wsgi.application"
ASGI_APPLICATION = "crm.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# Database: SQLite by default, PostgreSQL when DATABASE_URL says so.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'lichno.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and IMMEDIATE transactions let the web server, worker and beat share one file
    # without "database is locked" errors.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not shared-cache memory: tests that run a real Celery worker in a thread need the
    # busy timeout, which shared-cache table locks ignore. pytest-xdist suffixes it per worker.
    # One file per process, so parallel test runs never share it; Django deletes it afterwards.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"lichno-test-{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Internationalization: Russian first, English available, switch in the admin header.
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="ru")
LANGUAGES = [("ru", _("Russian")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Moscow")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

LOGIN_URL = "admin:login"

# Login hardening (152-FZ: staff read personal data). django-axes counts failed logins per
# username *and* IP together: a call center behind one NAT address is not locked out as a whole
# by one operator's typos, and guessing one account's password stops after AXES_FAILURE_LIMIT.
# The first backend refuses locked-out credentials before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner on every manage.py command
AXES_LOCKOUT_TEMPLATE = "admin/lockout.html"
# Behind a reverse proxy: how many proxies, and the header that carries the client address.
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = tuple(
    env.list("AXES_META_PRECEDENCE_ORDER", default=["REMOTE_ADDR"])
)

# Sessions: a staff session lasts a working shift and ends with the browser; cookies are
# HTTPS-only unless DEBUG or the site answers only on this machine (so `make run` works over
# plain HTTP). SECURE_COOKIES overrides the guess either way.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=9 * 60 * 60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "testserver"}
SECURE_COOKIES = env.bool(
    "SECURE_COOKIES", default=not DEBUG and not set(ALLOWED_HOSTS) <= _LOCAL_HOSTS
)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SAMESITE = "Lax"
# Not HttpOnly: the segment builder's script may read the token from the cookie (Django's own
# advice: HttpOnly on the CSRF cookie adds no protection).
CSRF_COOKIE_HTTPONLY = False

# Phone numbers: stored in E.164, parsed with this region when written without a country code.
PHONENUMBER_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="RU")
PHONENUMBER_DB_FORMAT = "E164"
PHONENUMBER_DEFAULT_FORMAT = "INTERNATIONAL"

# Celery: a filesystem broker by default (no server); redis:// or amqp:// in production. The
# host means nothing to it (the folders below do), but without one kombu warns at every connect.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Each app's tasks go to the queue named after its workload (STYLE.md: named queues).
CELERY_TASK_ROUTES = {
    "segments.tasks.*": {"queue": "segments"},
    "messaging.tasks.*": {"queue": "messaging"},
}
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=25 * 60)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env.str("CELERY_BROKER_DIR", default="") or VAR_DIR / "broker")
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Remote control (ping, inspect) broadcasts through files here, not in the working dir.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }

# REST framework: token auth for integrations (tokens in the admin), session auth for staff
# browsing /api/docs/; one exception format everywhere (crm.api.exceptions).
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "crm.api.pagination.IdCursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        "user": env.str("API_THROTTLE_USER", default="3000/min"),
    },
    "EXCEPTION_HANDLER": "crm.api.exceptions.exception_handler",
    "NON_FIELD_ERRORS_KEY": "non_field_errors",
}
# Largest request body the bulk endpoints read (10,000 objects fit well within it).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=64 * 1024 * 1024)
SPECTACULAR_SETTINGS = {
    "TITLE": "Lichno API",
    "DESCRIPTION": (
        "Push clients, products, purchases, events and consents in bulk; read client cards.\n\n"
        "Authenticate with `Authorization: Token <key>` (tokens are issued in the admin). "
        "Bulk endpoints take a JSON array of up to 10,000 objects and answer "
        "`{created, updated, unchanged, errors: [{index, field, message}]}`: by default valid "
        "objects are stored and invalid ones reported; with `?atomic=true` a batch with any "
        "error stores nothing (HTTP 400). Re-sending a batch changes nothing."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ContactChannelEnum": "crm.models.Channel",
        "SalesChannelEnum": "crm.models.SalesChannel",
        "ClientSourceEnum": "crm.models.ClientSource",
        "ConsentSourceEnum": "crm.models.ConsentSource",
    },
}

# Uploaded import files. With several machines, point this at storage every worker can read.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default="") or VAR_DIR / "media")
MEDIA_URL = "media/"
# Import files with more rows than this run in a Celery task; smaller ones in the request.
IMPORT_INLINE_MAX_ROWS = env.int("IMPORT_INLINE_MAX_ROWS", default=2000)
IMPORT_CHUNK_ROWS = env.int("IMPORT_CHUNK_ROWS", default=5000)

# Offers: the least margin over cost a discounted price must keep (%), and the price of one
# SMS part in roubles for campaign cost estimates.
OFFERS_MIN_MARGIN_PERCENT = env.str("OFFERS_MIN_MARGIN_PERCENT", default="10")
OFFERS_SMS_PART_PRICE = env.str("OFFERS_SMS_PART_PRICE", default="2.50")

# Loyalty.
LOYALTY_POINTS_LIFETIME_DAYS = env.int("LOYALTY_POINTS_LIFETIME_DAYS", default=365)
LOYALTY_ROLLING_SPEND_DAYS = env.int("LOYALTY_ROLLING_SPEND_DAYS", default=365)

# Messaging: gateway backends (dotted paths, like EMAIL_BACKEND) and their options.
SMS_BACKEND = env.str("SMS_BACKEND", default="messaging.backends.console.ConsoleBackend")
SMS_BACKEND_OPTIONS = env.json("SMS_BACKEND_OPTIONS", default={})
VOICE_BACKEND = env.str("VOICE_BACKEND", default="messaging.backends.console.ConsoleBackend")
VOICE_BACKEND_OPTIONS = env.json("VOICE_BACKEND_OPTIONS", default={})
MESSAGING_EMAIL_BACKEND = "messaging.backends.email.EmailBackend"
MESSAGING_EMAIL_BACKEND_OPTIONS: dict[str, object] = {}
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Lichno <noreply@lichno.local>")
MESSAGING_EMAIL_DOMAIN = env.str("MESSAGING_EMAIL_DOMAIN", default="lichno.local")
# Public base URL of tracked links (/o/<token>) and unsubscribe links in messages.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
# Dispatch: messages claimed per chunk, how long a claim lasts before another worker may
# recover it, and how many transient failures a message gets before it fails for good.
MESSAGING_DISPATCH_CHUNK = env.int("MESSAGING_DISPATCH_CHUNK", default=200)
MESSAGING_CLAIM_SECONDS = env.int("MESSAGING_CLAIM_SECONDS", default=120)
MESSAGING_MAX_ATTEMPTS = env.int("MESSAGING_MAX_ATTEMPTS", default=5)
# Planning: clients per batch (one transaction, a handful of statements).
MESSAGING_PLAN_BATCH = env.int("MESSAGING_PLAN_BATCH", default=5000)

# --- SMS gateways (sms helper): Kannel, direct SMPP, webhooks, inbound STOP ----------------------
# Kannel smsbox sendsms: URL, sendsms-user credentials, sender, and the base URL of our DLR hook
# that Kannel calls back (it must reach this server; the secret travels in it as ?token=).
KANNEL_SENDSMS_URL = env.str("KANNEL_SENDSMS_URL", default="http://127.0.0.1:13013/cgi-bin/sendsms")
KANNEL_USERNAME = env.str("KANNEL_USERNAME", default="lichno")
KANNEL_PASSWORD = env.str("KANNEL_PASSWORD", default="lichno")
KANNEL_FROM = env.str("KANNEL_FROM", default="Lichno")
KANNEL_DLR_URL = env.str("KANNEL_DLR_URL", default="http://127.0.0.1:8000/hooks/kannel/dlr")
KANNEL_TIMEOUT = env.float("KANNEL_TIMEOUT", default=10.0)
# Direct SMPP 3.4 (ESME): where the SMSC listens, our credentials, sender and session limits.
SMPP_HOST = env.str("SMPP_HOST", default="127.0.0.1")
SMPP_PORT = env.int("SMPP_PORT", default=2775)
SMPP_SYSTEM_ID = env.str("SMPP_SYSTEM_ID", default="lichno")
SMPP_PASSWORD = env.str("SMPP_PASSWORD", default="lichno")
SMPP_SYSTEM_TYPE = env.str("SMPP_SYSTEM_TYPE", default="")
SMPP_SOURCE_ADDR = env.str("SMPP_SOURCE_ADDR", default="Lichno")
SMPP_WINDOW = env.int("SMPP_WINDOW", default=50)
SMPP_THROUGHPUT = env.float("SMPP_THROUGHPUT", default=0.0)
SMPP_TIMEOUT = env.float("SMPP_TIMEOUT", default=10.0)
SMPP_ENQUIRE_LINK_SECONDS = env.float("SMPP_ENQUIRE_LINK_SECONDS", default=30.0)
# Webhooks: a shared secret and an IP allow-list per backend (empty list: any address).
HOOKS_KANNEL_SECRET = env.str("HOOKS_KANNEL_SECRET", default="")
HOOKS_KANNEL_ALLOWED_IPS = env.list("HOOKS_KANNEL_ALLOWED_IPS", default=["127.0.0.1", "::1"])
# Inbound SMS that withdraw SMS marketing consent (compared case-insensitively, whole text).
SMS_STOP_WORDS = env.list(
    "SMS_STOP_WORDS", default=["STOP", "СТОП", "ОТПИСКА", "ОТПИСАТЬСЯ", "UNSUBSCRIBE", "STOPALL"]
)
# --- end SMS gateways ----------------------------------------------------------------------------
# --- Voice (voice helper): autodial over SIP (baresip), Zadarma and Mango Office, click-to-call -
# The PBX used for click-to-call and incoming-call pop-ups when VOICE_BACKEND cannot originate
# (e.g. autodial over the SIP trunk, operators on a cloud PBX); empty: VOICE_BACKEND itself.
VOICE_PBX_BACKEND = env.str("VOICE_PBX_BACKEND", default="")
VOICE_PBX_BACKEND_OPTIONS = env.json("VOICE_PBX_BACKEND_OPTIONS", default={})
# Rendered prompts (espeak-ng -> sox 8 kHz), cached per text, and the dialer's baresip configs.
VOICE_PROMPT_DIR = env.str("VOICE_PROMPT_DIR", default=str(VAR_DIR / "voice-prompts"))
VOICE_WORK_DIR = env.str("VOICE_WORK_DIR", default=str(VAR_DIR / "voice"))
# What a digit pressed during an autodial call means: callback, do_not_call or wrong_number.
VOICE_DTMF_ACTIONS = env.json("VOICE_DTMF_ACTIONS", default={"1": "callback", "2": "do_not_call"})
# Busy / no answer: try again after this many minutes (inside the call window), at most this
# many attempts in all; and at most so many calls to one number per 24 hours and per 7 days.
VOICE_RETRY_MINUTES = env.int("VOICE_RETRY_MINUTES", default=30)
VOICE_MAX_ATTEMPTS = env.int("VOICE_MAX_ATTEMPTS", default=3)
VOICE_DAILY_CAP = env.int("VOICE_DAILY_CAP", default=2)
VOICE_WEEKLY_CAP = env.int("VOICE_WEEKLY_CAP", default=5)
# Wording version recorded with a "press 2: do not call me" consent withdrawal.
VOICE_IVR_WORDING_VERSION = env.str("VOICE_IVR_WORDING_VERSION", default="ivr-autodial-1")
# A call the dialer lost (crash) is closed as failed after this many minutes.
VOICE_STALE_CALL_MINUTES = env.int("VOICE_STALE_CALL_MINUTES", default=15)
# Webhooks of the cloud PBXs: IP allow-lists (their signatures are checked with the API secret).
HOOKS_ZADARMA_ALLOWED_IPS = env.list("HOOKS_ZADARMA_ALLOWED_IPS", default=[])
HOOKS_MANGO_ALLOWED_IPS = env.list("HOOKS_MANGO_ALLOWED_IPS", default=[])
# --- end Voice -----------------------------------------------------------------------------------
# How often one offer may reach one client when the offer sets no rule of its own.
MESSAGING_OFFER_DEFAULT_LIMIT = env.int("MESSAGING_OFFER_DEFAULT_LIMIT", default=1)
MESSAGING_OFFER_DEFAULT_WINDOW_DAYS = env.int("MESSAGING_OFFER_DEFAULT_WINDOW_DAYS", default=30)
# Trigger scenarios: a client who got a trigger message within this many hours gets no other
# scenario's message of a lower or equal priority.
MESSAGING_TRIGGER_WINDOW_HOURS = env.int("MESSAGING_TRIGGER_WINDOW_HOURS", default=24)
# Trigger scenarios: an occasion that became due this many hours ago still fires (evaluator
# downtime); older ones are let go instead of firing a backlog at once.
MESSAGING_TRIGGER_CATCH_UP_HOURS = env.int("MESSAGING_TRIGGER_CATCH_UP_HOURS", default=48)

# Personal data (152-FZ): clients with no purchase, event or consent change and no granted
# consent for this many years are anonymized by the nightly retention task (0 turns it off).
PRIVACY_RETENTION_YEARS = env.int("PRIVACY_RETENTION_YEARS", default=3)
# Uploaded import files hold personal data: deleted this many days after the last job that reads
# them finished (0 keeps them).
IMPORT_FILE_RETENTION_DAYS = env.int("IMPORT_FILE_RETENTION_DAYS", default=7)

# Tests: when true, a test that needs a service (PostgreSQL, broker) fails instead of skipping.
LICHNO_REQUIRE_SERVICES = env.bool("LICHNO_REQUIRE_SERVICES", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

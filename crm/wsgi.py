import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
site = get_wsgi_application()

from messaging.hooks.wsgi import with_hooks  # noqa: E402 - needs the settings configured above

# Gateway callbacks (/hooks/...) skip the site's middleware: messaging/hooks/wsgi.py says why.
application = with_hooks(site)

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dpp.settings")
# This process answers HTTP: its database connections get the API's timeouts (dpp/settings.py).
os.environ.setdefault("DPP_API_PROCESS", "true")
application = get_wsgi_application()

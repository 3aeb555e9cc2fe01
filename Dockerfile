# The DPP image: one image for api, worker, beat, flower and the one-shot migrate
# (compose.yaml picks the command).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements/ requirements/
# Build tools for pycurl (in case pip has to build it from source) are removed again in the same
# layer; libcurl4 stays, since a pycurl built here links against it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcurl4 gcc libcurl4-openssl-dev libssl-dev \
 && pip install --no-cache-dir -r requirements/base.txt \
 && apt-get purge -y --auto-remove gcc libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# Admin static files, served by the app itself (whitenoise). collectstatic reads the settings, so
# it runs with throwaway build-time values; the real ones come from the environment at run time.
RUN DPP_ENV=development DJANGO_SECRET_KEY=collectstatic-only DPP_KEY_PEPPER=collectstatic-only \
    python manage.py collectstatic --noinput -v 0
# The code stays owned by root and read-only to the process user.
RUN useradd --system --no-create-home --uid 1001 dpp
USER dpp
EXPOSE 8000 5555
CMD ["gunicorn", "dpp.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--timeout", "30", "--access-logfile", "-", "--no-control-socket"]

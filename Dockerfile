# The DPP image: one image for api, worker, beat and flower (compose.yaml picks the command).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libcurl4-openssl-dev libssl-dev libpq5 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/base.txt
COPY . .
RUN useradd --system --uid 1001 dpp && chown -R dpp /app
USER dpp
EXPOSE 8000 5555
CMD ["gunicorn", "dpp.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--timeout", "30"]

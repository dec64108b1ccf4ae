# One image for web, worker, beat and flower (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INFATIUM_VAR_DIR=/app/var

WORKDIR /app
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/prod.txt
COPY . .
RUN useradd --system --uid 1000 --home-dir /app infatium \
    && mkdir -p /app/var \
    && SECRET_KEY=collectstatic-only-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n') \
       python manage.py collectstatic --noinput \
    && chown -R infatium /app/var
USER infatium

EXPOSE 8000
CMD ["python", "-m", "uvicorn", "infatium.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--lifespan", "off", "--ws", "websockets-sansio", "--ws-max-size", "65536", "--ws-per-message-deflate", "false"]

# shoppulse worker / simulator image (docker-compose.yml builds it as shoppulse:0.1.0).
FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shoppulse ./shoppulse
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/shoppulse shoppulse
USER shoppulse
# Faust keeps <app>-data/ in the working directory; the built-in shoppulse.yaml is used
# unless one is mounted here (or SHOPPULSE_CONFIG points at one)
WORKDIR /var/lib/shoppulse
# the web server (/metrics) must be reachable from Prometheus' container
ENV SHOPPULSE_WEB_BIND=0.0.0.0 PYTHONUNBUFFERED=1
EXPOSE 6066
ENTRYPOINT ["shoppulse"]
CMD ["worker"]

# The hub as a container: one process (`iothub serve`), settings from HUB_* variables.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY drivers ./drivers
COPY alerts ./alerts
COPY provisioning ./provisioning
# DTLSSocket (CoAP over DTLS-PSK) builds tinydtls from source.
RUN apt-get update && apt-get install -y --no-install-recommends autoconf automake libtool gcc make \
    && pip install --no-cache-dir . DTLSSocket \
    && apt-get purge -y autoconf automake libtool gcc make && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home /var/lib/iothub iothub && mkdir -p /var/lib/iothub && chown iothub /var/lib/iothub
USER iothub
WORKDIR /var/lib/iothub
ENV HUB_VAR_DIR=/var/lib/iothub HUB_WEB_HOST=0.0.0.0 HUB_MQTT_HOST=0.0.0.0 HUB_COAP_HOST=0.0.0.0
EXPOSE 8080 1883 5683/udp 5684/udp
HEALTHCHECK --interval=15s --timeout=3s --retries=4 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz').status!=200)"
CMD ["iothub", "serve"]

FROM debian:bookworm-slim AS base
RUN apt-get update && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
COPY run.sh /app/run.sh
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/app/run.sh"]

FROM base AS release
ENV APP_ENV=production
# Start under the runtime defense (added by `defender dockerfile embed`).
COPY defender /opt/defender/defender
ENTRYPOINT ["/opt/defender/defender", "run", "--", "/usr/bin/tini", "--"]
CMD ["/app/run.sh"]

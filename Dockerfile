# The unwanted-mail service. Used by docker-compose.yml; `docker build .` works on its own too.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY . .
# the state directory belongs to the user the service runs as (a named volume mounted there
# inherits this ownership); in a container the API must listen on every interface, so a token
# (UM_HTTP_AUTH_TOKEN) is required, or UM_HTTP_AUTH=none explicitly
RUN mkdir -p /var/lib/unwanted-mail && chown node:node /var/lib/unwanted-mail
ENV UM_STATE_DIR=/var/lib/unwanted-mail \
    UM_HTTP_HOST=0.0.0.0
# memory (issue 11, BENCHMARKS.md "Memory: 1M mailboxes"): V8 otherwise lets the old generation
# grow to several times the live heap (646 MiB of heap for ~190 MiB live, measured); glibc's
# per-thread malloc arenas (RocksDB and libuv threads) fragment native memory
ENV NODE_OPTIONS=--max-old-space-size=256 \
    MALLOC_ARENA_MAX=2
VOLUME /var/lib/unwanted-mail
USER node
EXPOSE 8080
ENTRYPOINT ["node", "bin/um.mjs"]
CMD ["run"]

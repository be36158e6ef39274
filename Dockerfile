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
# memory (BENCHMARKS.md "Memory: 1M mailboxes"): bin/um, the launcher, caps the JS heap
# (UM_MAX_HEAP_MB, default 256) and sets MALLOC_ARENA_MAX=2, then execs node
VOLUME /var/lib/unwanted-mail
USER node
EXPOSE 8080
ENTRYPOINT ["bin/um"]
CMD ["run"]

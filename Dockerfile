# The unwanted-mail service. Used by docker-compose.yml; `docker build .` works on its own too.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY . .
USER node
EXPOSE 8080
ENTRYPOINT ["node", "bin/um.mjs"]
CMD ["run"]

FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY . .
USER node
EXPOSE 8080
# Start under the runtime defense (added by `defender dockerfile embed`).
COPY defender /opt/defender/defender
ENTRYPOINT ["/opt/defender/defender", "run", "--", "node", "server.js"]
CMD ["--port", "8080"]

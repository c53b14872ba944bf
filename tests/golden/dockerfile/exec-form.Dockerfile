FROM node:20-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY . .
USER node
EXPOSE 8080
ENTRYPOINT ["node", "server.js"]
CMD ["--port", "8080"]

# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.22

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN <<EOF
set -e
CGO_ENABLED=0 go build -o /out/app ./cmd/app
EOF
# Not the final stage: left alone.
ENTRYPOINT ["/out/app"]

FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/app /app
USER nonroot:nonroot
# Start under the runtime defense (added by `defender dockerfile embed`).
COPY --from=registry.example/defender:0.1.0 /defender /opt/defender/defender
ENTRYPOINT ["/opt/defender/defender", "run", "--", "/app"]
CMD ["serve", "--addr", ":8080"]

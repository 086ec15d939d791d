# Build: static binaries from the module: the server, and seed-moto, which
# docker-compose.yml's moto profile runs once to seed moto.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bucketbridge ./cmd/server \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/seed-moto ./cmd/seed-moto

# Run: no shell, no package manager, not root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bucketbridge /bucketbridge
COPY --from=build /out/seed-moto /seed-moto
COPY dev/authz.yaml /etc/bucketbridge/dev-authz.yaml
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/bucketbridge"]

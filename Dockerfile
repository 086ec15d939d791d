# Build: a static binary from the module.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bucketbridge ./cmd/server

# Run: no shell, no package manager, not root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bucketbridge /bucketbridge
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/bucketbridge"]

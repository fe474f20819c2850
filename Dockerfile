# Multi-stage: build with the dev toolchain, run with production dependencies only, as non-root.
FROM node:22-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-fund --no-audit
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:22-slim
ENV NODE_ENV=production
# What virtwarden spawns (src/providers/programs.ts): ipmitool for ipmi fence/power, ssh for
# qemu+ssh:// and ssh:// Git remotes, git for `run --git` (ca-certificates: https:// remotes),
# fence-agents for the fence-agents kind (fence_ipmilan, fence_redfish, fence_apc, ...: the programs
# Pacemaker users already configure). fence-agents brings python3 and its libraries (the AWS and GCE
# agents' boto3/googleapi among them), a large share of the image; without it a Host configured
# `agent: fence-agents` could not fence in the cluster, and a host that cannot be fenced is a host
# whose VMs never fail over.
RUN apt-get update && apt-get install -y --no-install-recommends ipmitool openssh-client fence-agents git ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-fund --no-audit && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY crds ./crds
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["run", "--kubernetes"]

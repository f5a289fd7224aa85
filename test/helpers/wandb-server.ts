// A stand-in for the W&B API on 127.0.0.1, answering what @wandb/sdk 0.5.1 (and our chart upload)
// asks, and recording every request: POST /graphql (Viewer, UpsertBucket, RunUploadUrls),
// POST /files/<entity>/<project>/<run>/file_stream, and PUT of uploaded files to /storage/...
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface GraphqlRequest {
  query: string;
  variables: Record<string, unknown>;
  operationName?: string;
}

export interface WandbServerOptions {
  /** The only API key it accepts (else HTTP 401), as the real server checks it. */
  apiKey?: string;
  /** Answer with HTTP 500: every request, or only the file_stream ones (a failure mid-run). */
  fail?: 'all' | 'file_stream';
  /** Never answer: every request, or only the file_stream ones. */
  hang?: 'all' | 'file_stream';
  /** The entity the viewer query names (the key's default entity). */
  entity?: string;
}

export interface WandbServer {
  url: string;
  requests: RecordedRequest[];
  /** The GraphQL requests, parsed. */
  graphql(): GraphqlRequest[];
  /** The history rows that arrived through file_stream, in order. */
  history(): Array<Record<string, unknown>>;
  /** The last summary that arrived through file_stream. */
  summary(): Record<string, unknown>;
  /** Files uploaded to the storage URLs, by name. */
  uploads: Map<string, Buffer>;
  close(): Promise<void>;
}

interface FileStreamBody {
  files?: Record<string, { offset: number; content: string[] }>;
  complete?: boolean;
  exitcode?: number;
}

export async function startWandbServer(options: WandbServerOptions = {}): Promise<WandbServer> {
  const requests: RecordedRequest[] = [];
  const uploads = new Map<string, Buffer>();
  const entity = options.entity ?? 'test-entity';
  let url = '';

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = req.url ?? '/';
      requests.push({ method: req.method ?? '', path, headers: req.headers, body });
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (options.hang === 'all' || (options.hang === 'file_stream' && path.endsWith('/file_stream'))) return;
      if (options.fail === 'all' || (options.fail === 'file_stream' && path.endsWith('/file_stream'))) {
        res.writeHead(500);
        res.end('internal error');
        return;
      }
      if (req.method === 'PUT' && path.startsWith('/storage/')) {
        uploads.set(decodeURIComponent(path.slice('/storage/'.length).split('?')[0]!), body);
        res.writeHead(200);
        res.end();
        return;
      }
      if (options.apiKey !== undefined) {
        const expected = `Basic ${Buffer.from(`api:${options.apiKey}`).toString('base64')}`;
        if (req.headers.authorization !== expected)
          return json(401, { errors: [{ message: 'not logged in' }] });
      }
      if (req.method === 'POST' && path === '/graphql') {
        const { query, variables } = JSON.parse(body.toString()) as GraphqlRequest;
        if (query.includes('query Viewer'))
          return json(200, { data: { viewer: { id: 'v1', entity, flags: '{}', teams: { edges: [] } } } });
        if (query.includes('mutation UpsertBucket')) {
          const project = { id: 'p1', name: variables.project, entity: { id: 'e1', name: variables.entity } };
          const bucket = {
            id: 'b1',
            name: variables.name,
            displayName: variables.displayName,
            description: null,
            config: variables.config,
            sweepName: null,
            project,
          };
          return json(200, { data: { upsertBucket: { bucket, inserted: true } } });
        }
        if (query.includes('query RunUploadUrls')) {
          const edges = (variables.files as string[]).map((name) => ({
            node: { name, url: `${url}/storage/${encodeURIComponent(name)}?signature=s1`, updatedAt: null },
          }));
          const files = { uploadHeaders: ['Content-Type:image/png'], edges };
          return json(200, { data: { model: { bucket: { id: 'b1', files } } } });
        }
        return json(400, { errors: [{ message: 'unknown query' }] });
      }
      if (req.method === 'POST' && path.endsWith('/file_stream'))
        return json(200, { exitcode: null, limits: {} });
      json(404, { error: 'not found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const fileStreams = () =>
    requests
      .filter((r) => r.method === 'POST' && r.path.endsWith('/file_stream'))
      .map((r) => JSON.parse(r.body.toString()) as FileStreamBody);
  return {
    url,
    requests,
    uploads,
    graphql: () =>
      requests
        .filter((r) => r.method === 'POST' && r.path === '/graphql')
        .map((r) => JSON.parse(r.body.toString()) as GraphqlRequest),
    history: () =>
      fileStreams().flatMap((f) =>
        (f.files?.['wandb-history.jsonl']?.content ?? []).map(
          (line) => JSON.parse(line) as Record<string, unknown>,
        ),
      ),
    summary: () => {
      const last = fileStreams()
        .map((f) => f.files?.['wandb-summary.json']?.content[0])
        .filter((s) => s !== undefined)
        .pop();
      return last ? (JSON.parse(last) as Record<string, unknown>) : {};
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// The HTTP API's requests and answers as zod schemas: the server validates the query with them and
// derives each route's JSON schema (and so /openapi.json) from them, so the docs cannot drift from
// what is checked.
import { z } from 'zod';

export const errorBody = z.object({ error: z.string() }).describe('What was wrong with the request');

const labelProbability = z.object({ label: z.string(), probability: z.number().min(0).max(1) });

/** A positive integer as a query gives it: text (one value; `?top_k=1&top_k=2` is refused). */
const positiveInteger = z.string().regex(/^[1-9]\d*$/);

/** `top_k` (or `topK`): labels per image; absent: the server's --top-k. */
export const predictQuery = z
  .object({
    top_k: positiveInteger.optional().describe('Labels per image, most probable first'),
    topK: positiveInteger.optional().describe('Same as top_k'),
  })
  .loose();

export const predictResponse = z.object({
  run: z.string().describe('<experiment>/<run>'),
  predictions: z.array(
    z.object({
      field: z.string().nullable().optional().describe('The form field (multipart only)'),
      filename: z.string().nullable().optional().describe('The file name (multipart only)'),
      label: z.string(),
      probability: z.number(),
      top: z.array(labelProbability),
    }),
  ),
});

export const healthResponse = z.object({ status: z.enum(['ok', 'shutting down']), run: z.string() });

/** What a client needs to call the model; the whole run.json needs the token (see server.ts). */
export const modelSummary = z.object({
  run: z.string(),
  model: z.string().describe('Architecture'),
  classes: z.array(z.string()).describe('Class names, in the order of the model outputs'),
  inputSize: z.object({ height: z.number(), width: z.number(), channels: z.number() }),
  normalization: z.object({ scale: z.number(), mean: z.array(z.number()), std: z.array(z.number()) }),
  metrics: z.object({
    testAccuracy: z.number().nullable(),
    testLoss: z.number().nullable(),
    validationAccuracy: z.number(),
    validationLoss: z.number(),
  }),
});

/** A zod schema as an OpenAPI 3.0 schema object. */
export function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'output' });
  return rest;
}

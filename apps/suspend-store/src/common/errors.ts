/** An error the HTTP layer turns into a status and a one-line JSON body. */
export class StoreError extends Error {
  override name = 'StoreError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const notFound = (what: string): StoreError => new StoreError(404, 'not_found', `${what} not found`);
export const badRequest = (message: string): StoreError => new StoreError(400, 'bad_request', message);

/** The stored bytes do not match what was committed: never served as good. */
export class IntegrityError extends StoreError {
  override name = 'IntegrityError';
  constructor(message: string) {
    super(500, 'integrity', message);
  }
}

/*
 * Transitional: dispatcher/store/layout.ts and dispatcher/auth/auth.ts still
 * import from here while they are being reorganized; everything else imports
 * shared/protocol/{agent,client,common} and shared/query directly. Delete
 * this file once those two import the new modules.
 */
export { RESULT_STATES, TRACE_STATES, ROLES, clientAuth } from './client';
export type { ClientAuth, Role } from './client';

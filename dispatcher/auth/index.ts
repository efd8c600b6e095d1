export { Auth, DEFAULT_SESSION_TTL_MS, MAX_TOKENS_PER_USER, checkRoles, checkUserName, isValidUserName } from './auth';
export type { Action, AuthContext, AuthOptions, Credentials, LoginResult, Principal, TokenInfo, UserInfo } from './auth';
export { AuthError } from './errors';
export type { AuthErrorCode } from './errors';
export { MIN_PASSWORD_LENGTH, checkPasswordPolicy, hashPassword, verifyPassword } from './password';
export { parseApiToken } from './tokens';

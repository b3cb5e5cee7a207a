// Identity and credential files on disk, as the SDK exports them. The readers and writers
// live in protocol/ because the node reads its own key file and the credential it shows
// with the same rules (a secret key readable by others is refused).

export { peekCredential, readCredentialFile, readIdentityFile, writeIdentityFile, writePrivateFile } from '../protocol/identity-files.js';
export type { CredentialPeek } from '../protocol/identity-files.js';

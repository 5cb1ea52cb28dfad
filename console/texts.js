// Every text the console shows, in one place: a translation is a copy of this file.
export const texts = {
  app: 'recado',
  signIn: {
    title: 'Sign in',
    email: 'Email',
    password: 'Password',
    submit: 'Sign in',
    busy: 'Signing in…',
    failed: 'The email address or the password is wrong.',
    throttled: (seconds) => `Too many attempts. Try again in ${seconds} s.`,
    expired: 'Your session ended. Sign in again; what you were writing is kept.',
  },
  header: {
    signOut: 'Sign out',
    live: 'Live',
    offline: 'Reconnecting…',
  },
  inbox: {
    title: 'Inbox',
    empty: 'No open conversations. New ones appear here as they arrive.',
    client: 'Client',
    allClients: 'All clients',
    status: 'Status',
    open: 'Open',
    closed: 'Closed',
    assignedToMe: 'Assigned to me',
    unassigned: 'Unassigned',
    count: (n) => (n === 1 ? '1 conversation' : `${n} conversations`),
    due: (text) => `due in ${text}`,
    overdue: (text) => `overdue by ${text}`,
    met: 'answered',
    escalated: (level) => `escalated (level ${level})`,
    keys: 'j / k to move, Enter to open',
  },
  error: {
    generic: 'Something went wrong. Try again.',
  },
};

/* The pod sandbox's first process: holds the pod's namespaces, reaps orphaned children (it is PID 1 of the
 * pod's PID namespace when the pod shares one) and exits 0 on SIGTERM or SIGINT. Built with gcc -static. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_stop(int signum) { (void)signum; stop_requested = 1; }

static void on_child(int signum) {
  (void)signum;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static void install(int signum, void (*handler)(int)) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  action.sa_flags = signum == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : 0;
  if (sigaction(signum, &action, NULL) != 0) {
    perror("pause: sigaction");
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("kinfer-pause 1");
    return 0;
  }
  if (getpid() != 1) fputs("pause: warning: not PID 1\n", stderr);
  install(SIGTERM, on_stop);
  install(SIGINT, on_stop);
  install(SIGCHLD, on_child);
  while (!stop_requested) pause();
  return 0;
}

-- wrk script: sign in again and again (the form comes from the BENCH_LOGIN variable).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_LOGIN")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

-- wrk script: POST /api/v1/items with a JSON body (the token comes from -H).
wrk.method = "POST"
wrk.body = '{"title": "Benchmark item", "description": "Created under load"}'
wrk.headers["Content-Type"] = "application/json"

// An S3 program that knows nothing of the gateway, on the AWS SDK for Go v2: the default
// credential chain and endpoint come from the environment only (docs/sdk-credentials.md).
// Commands as JSON lines on stdin, one JSON answer line each (the protocol of the boto3 client in
// tests/e2e/test_credentials.py): create, put, get, list; "key" answers the access key id the
// next call signs with (refreshing if due).
//
// -expiry-window D: the credentials cache treats credentials as expired D before their
// Expiration (aws.CredentialsCacheOptions.ExpiryWindow; the SDK's default is 0, so it refreshes
// only at expiry). The refresh test sets 15m with RGW's shortest credentials (900 s), so every
// call refreshes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

type command struct {
	Op     string `json:"op"`
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Body   string `json:"body"`
}

func say(out map[string]any) {
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

func sdkVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}

func main() {
	window := flag.Duration("expiry-window", 0, "treat credentials as expired this long before their Expiration")
	flag.Parse()
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = *window
	}))
	if err != nil {
		say(map[string]any{"op": "client", "error": "LoadDefaultConfig", "message": err.Error()})
		os.Exit(3)
	}
	client := s3.NewFromConfig(cfg)
	say(map[string]any{"op": "client", "sdk": sdkVersion("github.com/aws/aws-sdk-go-v2/config"),
		"s3": sdkVersion("github.com/aws/aws-sdk-go-v2/service/s3")})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var cmd command
		out := map[string]any{}
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			out["op"], out["error"] = "", err.Error()
			say(out)
			continue
		}
		out["op"] = cmd.Op
		call, cancel := context.WithTimeout(ctx, 60*time.Second)
		switch cmd.Op {
		case "create":
			_, err = client.CreateBucket(call, &s3.CreateBucketInput{Bucket: &cmd.Bucket})
		case "put":
			_, err = client.PutObject(call, &s3.PutObjectInput{Bucket: &cmd.Bucket, Key: &cmd.Key, Body: strings.NewReader(cmd.Body)})
		case "get":
			var r *s3.GetObjectOutput
			if r, err = client.GetObject(call, &s3.GetObjectInput{Bucket: &cmd.Bucket, Key: &cmd.Key}); err == nil {
				var b []byte
				b, err = io.ReadAll(r.Body)
				r.Body.Close()
				out["body"] = string(b)
			}
		case "list":
			var r *s3.ListObjectsV2Output
			if r, err = client.ListObjectsV2(call, &s3.ListObjectsV2Input{Bucket: &cmd.Bucket}); err == nil {
				keys := []string{}
				for _, o := range r.Contents {
					keys = append(keys, aws.ToString(o.Key))
				}
				out["keys"] = keys
			}
		case "key":
			var c aws.Credentials
			if c, err = cfg.Credentials.Retrieve(call); err == nil {
				out["key"] = c.AccessKeyID
				out["expiration"] = c.Expires.UTC().Format(time.RFC3339)
			}
		default:
			err = fmt.Errorf("unknown op %q", cmd.Op)
		}
		cancel()
		if err != nil {
			out["error"] = fmt.Sprintf("%T", err)
			msg := err.Error()
			if len(msg) > 500 {
				msg = msg[:500]
			}
			out["message"] = msg
		}
		say(out)
	}
}

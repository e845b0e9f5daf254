package promote

import "errors"

var (
	// ErrNoImage is wrapped when the file refers nowhere to the image:
	// no container of a manifest, no entry of a kustomization's images.
	ErrNoImage = errors.New("no reference to the image")
	// ErrNoFile is wrapped when the branch has no file at the path.
	ErrNoFile = errors.New("no such file")
	// ErrRejected is wrapped when every push was rejected because the
	// branch moved meanwhile.
	ErrRejected = errors.New("push rejected: the branch kept moving")
)
